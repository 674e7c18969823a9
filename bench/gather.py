"""Time per row of the loader's batch gather alone (`playstream.training.collate.gather`:
planes unpacked and moved by each row's symmetry, the other arrays and the CSR policy), packed
planes against dense planes of the same rows.

    python bench/gather.py [--games 6] [--rounds 15] [--epochs 4]

Same datasets as bench/loader.py (its `build`: random 2-player games, v2, history 3, the same
chunks compacted as format 3 and as dense float32). The stream runs ``--epochs`` epochs of
each (batch 256, ``augment=True``, shuffle buffer 4,096, ``range_rows=256``) and records
the arguments of every gather; then each round re-runs all of them, the two formats
alternating. Why this and not only bench/loader.py: on a shared machine the loader's
rows/s swing by +-15 % between runs, while the gather (what the two formats do
differently) timed in one process, min over rounds, moves by a few %. Prints microseconds
per row (min and median over rounds) and dense/packed (above 1: packed is faster).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import playstream.training.loader as loader_module
from playstream.training.loader import StreamOptions, TrainingStream

from loader import BOARDS, build


def recorded_gathers(source: Path, epochs: int) -> list[tuple[Any, ...]]:
    """The (parts, chosen, symmetries) of every batch of ``epochs`` epochs."""
    calls: list[tuple[Any, ...]] = []
    real = loader_module.gather

    def spy(parts: Any, chosen: Any, symmetries: Any, out: Any) -> Any:
        calls.append((parts, chosen, symmetries))
        return real(parts, chosen, symmetries, out)

    loader_module.gather = spy
    try:
        stream = TrainingStream(source, StreamOptions(batch_size=256, augment=True,
                                                      shuffle_buffer=4096, range_rows=256))
        for epoch in range(epochs):
            stream.set_epoch(epoch)
            sum(len(batch["values"]) for batch in stream)
    finally:
        loader_module.gather = real
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    print(f"{'board':10} {'dense us/row':>12} {'packed':>7} {'dense/packed':>12}   "
          f"(min over rounds; median: dense, packed, ratio)")
    for board in BOARDS:
        with tempfile.TemporaryDirectory() as tmp:
            outputs = build(board, args.games, Path(tmp))
            calls = {name: recorded_gathers(out, args.epochs) for name, out in outputs.items()}
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, batches in calls.items():
                    rows = sum(chosen.size for _, chosen, _ in batches)
                    t0 = time.perf_counter()
                    for parts, chosen, symmetries in batches:
                        loader_module.gather(parts, chosen, symmetries, None)
                    times[name].append((time.perf_counter() - t0) / rows * 1e6)
            dense, packed = times["dense"], times["packed"]
            median_dense, median_packed = statistics.median(dense), statistics.median(packed)
            print(f"{board:10} {min(dense):12.1f} {min(packed):7.1f} "
                  f"{min(dense) / min(packed):12.2f}   ({median_dense:.1f}, "
                  f"{median_packed:.1f}, {median_dense / median_packed:.2f})", flush=True)


if __name__ == "__main__":
    main()
