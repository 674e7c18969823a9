"""Bytes per row of the dataset formats, per board, and the cost of reading them back.

    python bench/format.py [--games 20] [--agent mcts --simulations 16] [--repeats 5]

For each board of the built-in game (2 players, v2, history 3): plays games, encodes them and
writes the same rows as format 1 (dense float32 planes), format 2 (bits, constants once) and
format 2 deflated. Prints bytes per row of each file next to the bit-information floor of
the planes (binary channels x H x W / 8) and KataGo's figures on 19x19 (5,503 bytes per row
uncompressed, 881 deflated: issue 9), then the median time to read every row back as dense
float32 batches, format 2 against format 1 (the baseline: the same rows, dense, read the
same way from the page cache).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from playstream.dataset import NPZDatasetWriter, RowBatch, iter_row_batches, read_metadata
from playstream.encoders.rows import encode_game_rows
from playstream.encoders.versions import ExportSettings
from playstream.games import get_game
from playstream.selfplay import generate_records

BOARDS = ("square8", "square19", "hex8", "hexagonal")


def write(path: Path, rows: RowBatch, settings: ExportSettings, **options: object) -> int:
    with NPZDatasetWriter(path, settings.dataset_config(), **options) as writer:  # type: ignore[arg-type]
        writer.write(rows)
    return path.stat().st_size


def read_seconds(path: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _batch in iter_row_batches(path, 256):
            pass
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=20)
    ap.add_argument("--agent", default="random", choices=("random", "mcts"))
    ap.add_argument("--simulations", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    game = get_game("connect")
    print(f"{'board':10} {'rows':>6} {'dense B/row':>11} {'packed B/row':>12} "
          f"{'deflated B/row':>14} {'bit floor':>9} {'packed/dense':>12} "
          f"{'read packed/dense':>17}")
    for board in BOARDS:
        settings = ExportSettings(board_type=board, num_players=2, feature_version="v2",
                                  history_length=3)
        records = list(generate_records(board_type=board, num_players=2, agent=args.agent,
                                        seed=1, count=args.games, node="bench",
                                        simulations=args.simulations))
        rows = RowBatch.concat([encode_game_rows(game, game.replay(board, 2, r.moves),
                                                 r.search, settings, r.game_id)
                                for r in records])
        n = len(rows)
        with tempfile.TemporaryDirectory() as tmp:
            dense, packed, deflated = (Path(tmp) / f"{k}.npz" for k in ("d", "p", "z"))
            sizes = (write(dense, rows, settings, format_version=2),
                     write(packed, rows, settings),
                     write(deflated, rows, settings, compress=True))
            storage = read_metadata(packed)["feature_storage"]
            config = settings.dataset_config()
            floor = len(storage["bits"]) * config.height * config.width / 8
            ratio = read_seconds(packed, args.repeats) / read_seconds(dense, args.repeats)
        d, p, z = (s / n for s in sizes)
        print(f"{board:10} {n:6d} {d:11,.0f} {p:12,.0f} {z:14,.0f} {floor:9,.0f} "
              f"{p / d:12.3f} {ratio:17.2f}")


if __name__ == "__main__":
    main()
