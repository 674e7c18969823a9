"""Encoding speed per board, against numpy writing the same bytes (issue: core).

    python bench/encode.py [--games 20] [--repeats 5] [--feature-version v2] [--history 3]
                           [--cpu-time]

For each board (connect's four, and OpenSpiel's go 9x9 and chess when the openspiel extra is
installed): plays random 2-player games, then times `encode_game_rows` over all of them
(features, globals, values, CSR policy) and, as the baseline measured in the same run, the
time `np.save` needs just to write the resulting arrays to a file. Prints medians over the
repeats and the ratio encode/write (how many times slower than merely writing the output).
``--cpu-time`` times both with this process's CPU time instead of the wall clock: on a shared
machine other processes' load then shifts the figures much less (comparing two versions of
the code, run each alternately with ``PYTHONPATH`` pointing at its tree).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from playstream.dataset import RowBatch
from playstream.encoders.rows import encode_game_rows
from playstream.encoders.versions import ExportSettings
from playstream.games import Game, Replay, available_games, get_game
from playstream.records import GameRecord
from playstream.selfplay import generate_records

BOARDS = (("connect", "square8"), ("connect", "square19"), ("connect", "hex8"),
          ("connect", "hexagonal"), ("openspiel", "go(board_size=9)"), ("openspiel", "chess"))


def replays_of(game: Game, records: list[GameRecord]) -> list[Replay]:
    """The replays the encoder takes, made beforehand: a processor gets them from validating
    the record, so the encode rate leaves them out."""
    return [game.replay(r.board_type, r.num_players, r.moves) for r in records]


def time_encoding(game: Game, records: list[GameRecord], replays: list[Replay],
                  settings: ExportSettings, clock: Callable[[], float] = time.perf_counter
                  ) -> tuple[float, list[RowBatch]]:
    """Seconds `encode_game_rows` takes over every record in this process, and its rows:
    the single-process encode rate that other benchmarks (bench/pipeline.py) compare to.
    Records without search statistics (the random agent's), so every target is one-hot."""
    t0 = clock()
    batches = [encode_game_rows(game, rp, None, settings, r.game_id)
               for r, rp in zip(records, replays)]
    return clock() - t0, batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--feature-version", default="v2")
    ap.add_argument("--history", type=int, default=3)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with this process's CPU time, not the wall clock")
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"{'board':18} {'positions':>9} {'MB out':>8} {'pos/s (median)':>15} "
          f"{'bytes/row':>10} {'np.save MB/s':>13} {'encode/write':>13}")
    for game_name, board in BOARDS:
        if game_name not in available_games():
            continue
        game = get_game(game_name)
        version = args.feature_version if game_name == "connect" else None
        records = list(generate_records(game_name=game_name, board_type=board, num_players=2,
                                        agent="random", seed=1, count=args.games,
                                        node="bench"))
        replays = replays_of(game, records)
        settings = ExportSettings(game=game_name, board_type=board, num_players=2,
                                  feature_version=version, history_length=args.history)
        encode_times, write_times = [], []
        for _ in range(args.repeats):
            seconds, batches = time_encoding(game, records, replays, settings, clock)
            encode_times.append(seconds)
            arrays = {name: np.concatenate([getattr(b, name) for b in batches])
                      for name in ("features", "globals", "values", "values_mp",
                                   "policy_indices", "policy_values", "move_number")}
            with tempfile.TemporaryDirectory() as tmp:
                t0 = clock()
                for name, arr in arrays.items():
                    with open(Path(tmp) / f"{name}.npy", "wb") as fh:
                        np.save(fh, arr)
                write_times.append(clock() - t0)
        positions = sum(len(b) for b in batches)
        nbytes = sum(a.nbytes for a in arrays.values())
        enc, wr = statistics.median(encode_times), statistics.median(write_times)
        print(f"{board:18} {positions:9d} {nbytes / 1e6:8.1f} {positions / enc:15,.0f} "
              f"{nbytes / positions:10,.0f} {nbytes / 1e6 / wr:13,.0f} {enc / wr:13.1f}")


if __name__ == "__main__":
    main()
