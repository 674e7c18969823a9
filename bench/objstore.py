"""Seal and compaction throughput on S3Proxy next to the local store.

    python bench/objstore.py [--chunks 12] [--rows 4000] [--repeats 3]

Starts a local S3Proxy (deploy/s3/s3.sh, filesystem backend, in a temp folder) and, for each
store (a local folder, then ``s3://playstream/bench-<n>``), measures in-process:

  * seal: a ChunkWriter seals ``--chunks`` chunks of ``--rows`` rows each (square19 rows,
    v2 features, history 3); the time covers building the NPZ file in the scratch folder and
    ``create_if_absent`` (a local link, or a conditional put / multipart upload);
  * compact: ``compact`` of those chunks into a dataset directory on the same store (download
    and verification of every chunk, the dataset shards, the manifest, the pointer).

Baseline, in the same run: writing the same files with the port's plain ``write`` (a put, or
a temp copy + fsync + rename), to show what the store itself costs. Medians over ``--repeats``; MB are 10^6 bytes
of chunk files.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from playstream.chunks import ChunkStore, ChunkWriter
from playstream.compaction import CompactOptions, compact
from playstream.dataset import DatasetConfig, RowBatch
from playstream.dataset.config import encoder_scope
from playstream.storage.locals3 import BUCKET, LocalS3

CONFIG = DatasetConfig(game="connect", game_version="1", board_type="square19", num_players=2,
                       feature_version="v2", history_length=3,
                       channels=tuple(f"c{i}" for i in range(16)), global_names=("g0", "g1"),
                       policy_size=361, height=19, width=19)


def rows(game: str, n: int, seed: int) -> RowBatch:
    """``n`` rows of one game: binary planes (as real stone planes are), a two-entry policy."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, CONFIG.policy_size - 1, n)
    weight = rng.random(n).astype(np.float32)
    return RowBatch(
        features=(rng.random((n, len(CONFIG.channels), 19, 19)) < 0.1).astype(np.float32),
        globals=rng.random((n, 2), dtype=np.float32),
        values=rng.uniform(-1, 1, n).astype(np.float32),
        values_mp=rng.uniform(-1, 1, (n, CONFIG.num_players)).astype(np.float32),
        policy_indptr=np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        policy_indices=np.stack([first, first + 1], 1).reshape(-1).astype(np.int32),
        policy_values=np.stack([weight, 1 - weight], 1).reshape(-1),
        game_id=np.array([game] * n, dtype="<U32"),
        move_number=np.arange(n, dtype=np.int32),
        player=(np.arange(n) % 2 + 1).astype(np.int8),
        num_players=np.full(n, 2, np.int8))


def seal_all(store: ChunkStore, chunks: int, per_chunk: int, batches: list[RowBatch]
             ) -> tuple[float, int]:
    """Seconds to seal ``chunks`` chunks (one game of ``per_chunk`` rows each), and bytes."""
    writer = ChunkWriter(store, "bench+0", encoder_scope("v2", 3), max_rows=per_chunk)
    started = time.perf_counter()
    sealed = []
    for i in range(chunks):
        sealed += writer.add(i, CONFIG, batches[i], game_id=f"g{i}")
    seconds = time.perf_counter() - started
    writer.close()
    assert len(sealed) == chunks
    return seconds, sum(store.storage.stat(c.object_name).size for c in sealed)


def baseline(store: ChunkStore, files: list[Path]) -> float:
    """Seconds to write the same files with the port's plain ``write`` (a put, or a copy +
    fsync + rename): the store's own cost."""
    started = time.perf_counter()
    for i, f in enumerate(files):
        store.storage.write(f"baseline/{i}.bin", f)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=12)
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    batches = [rows(f"g{i}", args.rows, i) for i in range(args.chunks)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-objstore-"))
    server = LocalS3(tmp / "s3")
    server.start()
    os.environ.update(server.env())
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for kind in ("local", "s3"):
            figures: dict[str, list[float]] = {"seal": [], "compact": [], "baseline": []}
            for r in range(args.repeats):
                location = (str(tmp / f"local-{r}") if kind == "local"
                            else f"s3://{BUCKET}/bench-{r}")
                store = ChunkStore(f"{location}/chunks")
                seconds, size = seal_all(store, args.chunks, args.rows, batches)
                figures["seal"].append(size / seconds / 1e6)
                started = time.perf_counter()
                compact(store, None, f"{location}/datasets/ds",
                        CompactOptions(val_fraction=0.05, memory_budget_bytes=256 << 20))
                figures["compact"].append(size / (time.perf_counter() - started) / 1e6)
                local_copies = tmp / f"copies-{kind}-{r}"
                local_copies.mkdir()
                files = []
                for n in store.chunks(CONFIG.key()):
                    path, _ = store.fetch(CONFIG.key(), n, local_copies)
                    if store.is_local:
                        files.append(Path(shutil.copy(path, local_copies / n.filename)))
                    else:
                        files.append(path)
                figures["baseline"].append(size / baseline(store, files) / 1e6)
                figures.setdefault("size", []).append(size / 1e6)
            results[kind] = figures
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    total = args.chunks * args.rows
    print(f"{args.chunks} chunks x {args.rows} rows (square19 v2 h3), median of {args.repeats}")
    print("| store | chunk MB | seal MB/s | seal rows/s | compact MB/s | compact rows/s | "
          "plain write MB/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, f in results.items():
        med = {k: statistics.median(v) for k, v in f.items()}
        per_mb = total / med["size"]
        print(f"| {kind} | {med['size']:.0f} | {med['seal']:.1f} | {med['seal'] * per_mb:,.0f} | "
              f"{med['compact']:.1f} | {med['compact'] * per_mb:,.0f} | {med['baseline']:.0f} |")
    ratio = {k: statistics.median(results["s3"][k]) / statistics.median(results["local"][k])
             for k in ("seal", "compact", "baseline")}
    print(f"s3 / local: seal {ratio['seal']:.2f}, compact {ratio['compact']:.2f}, "
          f"plain write {ratio['baseline']:.2f}")


if __name__ == "__main__":
    main()
