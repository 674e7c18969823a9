"""Training loader throughput per worker, against reading the same rows as dense float32.

    python bench/loader.py [--games 6] [--repeats 3] [--batch-size 256] [--workers 1,2]

For square19 and hexagonal (2 players, v2, history 3): plays random games, publishes them as
a sharded dataset version (chunk store + compaction, as the pipeline does), then times whole
epochs of `PlaystreamDataset` through a torch DataLoader with 1 and 2 worker processes:
range reads, unpacking (format 1 stores float32, so a copy out of the file today), the
shuffle buffer, a random symmetry per row on planes and policy, the dense policy, and the
hand-over of contiguous tensors. The first epoch warms the page cache and each worker's
checksum verification and is not timed. Baseline, measured in the same run: ``np.load`` of the
same rows' features saved as one dense float32 .npy, hot in the page cache (the least a
trainer reading dense features must do per row). Prints medians over the repeats, rows/s per
worker, and loader/baseline ratios.
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
from playstream.incremental import IncrementalExporter
from playstream.selfplay import generate_records
from playstream.training import PlaystreamDataset, resolve

BOARDS = ("square19", "hexagonal")


def build(board: str, games: int, folder: Path) -> Path:
    store = ChunkStore(folder / "chunks")
    writer = ChunkWriter(store, "file-bench+0", encoder_scope("v2", 3))
    exporter = IncrementalExporter(writer, feature_version="v2", history_length=3)
    records = generate_records(board_type=board, num_players=2, agent="random", seed=1,
                               count=games, node="bench")
    for i, record in enumerate(records):
        exporter.add_game(writer.next_position + i, record.model_dump(mode="json"))
    exporter.finalize()
    writer.close()
    compact(store, None, folder / "out", CompactOptions(shard_rows=2048))
    return folder / "out"


def epoch_seconds(ds: PlaystreamDataset, workers: int, repeats: int) -> list[float]:
    loader = DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=True)
    times = []
    for epoch in range(repeats + 1):
        ds.set_epoch(epoch)
        t0 = time.perf_counter()
        rows = sum(len(batch["values"]) for batch in loader)
        if epoch:
            times.append(time.perf_counter() - t0)
    assert rows == ds.stream.snapshot.rows
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"{'board':10} {'rows':>6} {'MB':>6} {'dense np.load rows/s':>21} "
          + " ".join(f"{f'{w}w rows/s':>11} {f'{w}w /worker':>11} {f'{w}w ratio':>9}"
                     for w in worker_counts))
    for board in BOARDS:
        with tempfile.TemporaryDirectory() as tmp:
            out = build(board, args.games, Path(tmp))
            snapshot = resolve(out)
            dense = Path(tmp) / "features.npy"
            np.save(dense, np.concatenate([load_npz_dataset(f.path).rows.features
                                           for f in snapshot.files]))
            np.load(dense)  # into the page cache
            base = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                features = np.load(dense)
                base.append(time.perf_counter() - t0)
            rows = snapshot.rows
            base_rate = rows / statistics.median(base)
            cells = [f"{board:10} {rows:6d} {features.nbytes / 1e6:6.0f} {base_rate:21,.0f}"]
            for workers in worker_counts:
                ds = PlaystreamDataset(out, batch_size=args.batch_size, augment=True,
                                       shuffle_buffer=4096)
                rate = rows / statistics.median(epoch_seconds(ds, workers, args.repeats))
                cells.append(f"{rate:11,.0f} {rate / workers:11,.0f} {rate / base_rate:9.2f}")
            print(" ".join(cells), flush=True)


if __name__ == "__main__":
    main()
