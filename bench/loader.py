"""Training loader throughput per worker on packed planes, against the same loader on dense
planes and against a bare dense read.

    python bench/loader.py [--games 6] [--repeats 3] [--epochs 5] [--batch-size 256]
                           [--workers 1,2] [--range-rows 256]

For square19 and hexagonal (2 players, v2, history 3): plays random games, seals them as
chunks and compacts the same chunks twice (as the pipeline does), once with packed planes
(format 3, the default) and once with ``--features dense`` (one float32 ``features`` array),
so both datasets hold the same rows. Then it times whole epochs of `PlaystreamDataset`
through a torch DataLoader with 1 and 2 persistent worker processes: range reads, unpacking
(packed) or a copy out of the mapped file (dense), the shuffle buffer, a random symmetry per
row on planes and policy, the dense policy, and the hand-over of contiguous tensors. The
first epoch warms the page cache and each worker's checksum verification and is not timed;
then each repeat times ``--epochs`` epochs of each dataset, the two datasets' epochs
alternating, so a change of the machine's load falls on both.

Baselines, measured in the same run:

* the fair one, the same pipeline (DataLoader, shuffle, augmentation, collation, worker
  count) over the dense dataset: "packed / dense loader" is whether the compact format slows
  training;
* the floor, ``np.load`` of the same rows' features saved as one dense float32 .npy, hot in
  the page cache (the least a trainer reading dense features must do per row, no
  augmentation, no batches, no processes).

Prints medians over the repeats of rows/s (and per worker) and both ratios.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from playstream.chunks import ChunkStore, ChunkWriter
from playstream.compaction import CompactOptions, compact
from playstream.dataset import load_npz_dataset
from playstream.dataset.config import encoder_scope
from playstream.dataset.schema import DENSE_FORMAT_VERSION, FORMAT_VERSION
from playstream.incremental import IncrementalExporter
from playstream.selfplay import generate_records
from playstream.training import PlaystreamDataset, resolve

BOARDS = ("square19", "hexagonal")
FORMATS = {"packed": FORMAT_VERSION, "dense": DENSE_FORMAT_VERSION}


def build(board: str, games: int, folder: Path) -> dict[str, Path]:
    """The same sealed chunks compacted once per feature format."""
    store = ChunkStore(folder / "chunks")
    writer = ChunkWriter(store, "file-bench+0", encoder_scope("v2", 3))
    exporter = IncrementalExporter(writer, feature_version="v2", history_length=3)
    records = generate_records(board_type=board, num_players=2, agent="random", seed=1,
                               count=games, node="bench")
    for i, record in enumerate(records):
        exporter.add_game(writer.next_position + i, record.model_dump(mode="json"))
    exporter.finalize()
    writer.close()
    outputs = {}
    for name, version in FORMATS.items():
        compact(store, None, folder / name,
                CompactOptions(shard_rows=2048, format_version=version))
        outputs[name] = folder / name
    return outputs


def loader_rates(sources: dict[str, Path], workers: int, args: argparse.Namespace
                 ) -> dict[str, float]:
    """rows/s of each source: per repeat, ``--epochs`` epochs of each, the sources' epochs
    alternating (a change of the machine's load falls on both); the median over repeats."""
    datasets = {name: PlaystreamDataset(source, batch_size=args.batch_size, augment=True,
                                        shuffle_buffer=4096, range_rows=args.range_rows)
                for name, source in sources.items()}
    loaders = {name: DataLoader(ds, batch_size=None, num_workers=workers,
                                persistent_workers=True) for name, ds in datasets.items()}
    for name, loader in loaders.items():  # warm-up: page cache, checksums, worker start
        datasets[name].set_epoch(0)
        assert sum(len(b["values"]) for b in loader) == datasets[name].stream.snapshot.rows
    times: dict[str, list[float]] = {name: [] for name in sources}
    epoch = 0
    for _ in range(args.repeats):
        spent = dict.fromkeys(sources, 0.0)
        for _ in range(args.epochs):
            epoch += 1
            for name, loader in loaders.items():
                datasets[name].set_epoch(epoch)
                t0 = time.perf_counter()
                rows = sum(len(batch["values"]) for batch in loader)
                spent[name] += time.perf_counter() - t0
                assert rows == datasets[name].stream.snapshot.rows
        for name in sources:
            times[name].append(spent[name] / args.epochs)
    return {name: datasets[name].stream.snapshot.rows / statistics.median(times[name])
            for name in sources}


def load_rate(dense: Path, repeats: int) -> float:
    np.load(dense)  # into the page cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = len(np.load(dense))
        times.append(time.perf_counter() - t0)
    return rows / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per repeat")
    ap.add_argument("--range-rows", type=int, default=256,
                    help="rows dealt to a worker at a time (the loader's default, 1024, "
                         "would leave a second worker idle on the ~1,000 rows of 6 games)")
    args = ap.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"{'board':10} {'rows':>6} {'MB':>5} {'np.load':>9} " + " ".join(
        f"{f'{w}w dense':>9} {f'{w}w packed':>10} {'/worker':>8} {'/dense':>6} {'/np.load':>8}"
        for w in worker_counts))
    for board in BOARDS:
        with tempfile.TemporaryDirectory() as tmp:
            outputs = build(board, args.games, Path(tmp))
            snapshots = {name: resolve(out) for name, out in outputs.items()}
            rows = snapshots["packed"].rows
            assert snapshots["dense"].rows == rows
            dense = Path(tmp) / "features.npy"
            features = np.concatenate([load_npz_dataset(f.path).rows.features
                                       for f in snapshots["dense"].files])
            np.save(dense, features)
            floor = load_rate(dense, args.repeats)
            cells = [f"{board:10} {rows:6d} {features.nbytes / 1e6:5.0f} {floor:9,.0f}"]
            for workers in worker_counts:
                rates = loader_rates(outputs, workers, args)
                base, rate = rates["dense"], rates["packed"]
                cells.append(f"{base:9,.0f} {rate:10,.0f} {rate / workers:8,.0f} "
                             f"{rate / base:6.2f} {rate / floor:8.2f}")
            print(" ".join(cells), flush=True)


if __name__ == "__main__":
    main()
