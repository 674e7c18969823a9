"""Data quality (the seed's data_quality): checks of a game database, and the detailed
statistics of a dataset that tell a trainer whether the data looks sane.

Dataset integrity checks live in `playstream.dataset.validate`; this module adds the game
database's checks and distributions computed in bounded memory.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Callable

import numpy as np

from playstream.dataset import CheckResult, RowBatch, iter_row_batches, read_metadata
from playstream.digests import DigestSet
from playstream.errors import GameFileError, RecordError
from playstream.gamefiles import open_game_source, position_context
from playstream.records import validate_record
from playstream.rejects import Reject

BATCH_ROWS = 4096


@dataclass
class GameFileReport:
    path: str
    results: list[CheckResult] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def _summary(values: list[int] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"count": 0}
    q = np.percentile(arr, [0, 10, 50, 90, 100])
    return {"count": int(arr.size), "mean": round(float(arr.mean()), 4),
            **{k: round(float(v), 4) for k, v in zip(("min", "p10", "p50", "p90", "max"), q)}}


def check_game_file(path: Path, *, max_listed: int = 5,
                    on_reject: Callable[[Reject], None] | None = None) -> GameFileReport:
    """Opens (schema), holds games, every game valid (both layers), game ids unique, move
    sequences unique (the same game under two ids: a warning, the check still passes).
    ``on_reject`` receives every invalid record."""
    report = GameFileReport(str(path))
    try:
        items = open_game_source(path)
        first = next(items, None)  # a database is opened (and its schema checked) lazily
    except GameFileError as err:
        report.results.append(CheckResult("opens", False, str(err)))
        return report
    report.results.append(CheckResult("opens", True, "passed"))
    lengths: list[int] = []
    invalid: Counter[str] = Counter()
    examples: list[str] = []
    ids: set[str] = set()
    duplicates = 0
    sequences = DigestSet()
    repeated_moves = 0
    wins: Counter[tuple[int, int | None]] = Counter()
    seen = 0
    for item in chain([first] if first is not None else [], items):
        seen += 1
        try:
            if item.error is not None:
                raise item.error
            record, _ = validate_record(item.data, **position_context(path, item.position))
            lengths.append(len(record.moves))
            repeated_id = record.game_id in ids
            duplicates += repeated_id
            ids.add(record.game_id)
            if not sequences.add(record.moves_digest()) and not repeated_id:
                repeated_moves += 1
            wins[(record.num_players, record.winner)] += 1
        except RecordError as err:
            invalid[err.field or "record"] += 1
            if len(examples) < max_listed:
                examples.append(str(err))
            if on_reject is not None:
                on_reject(Reject.from_error(err, **position_context(path, item.position)))
    report.results.append(CheckResult("has games", seen > 0,
                                      f"{seen} games" if seen else "no games"))
    report.results.append(CheckResult(
        "games valid", not invalid,
        "all valid" if not invalid else
        f"{sum(invalid.values())} invalid (by field: {dict(invalid)}); e.g. "
        + " | ".join(examples)))
    report.results.append(CheckResult("game ids unique", duplicates == 0,
                                      f"{duplicates} repeated game ids" if duplicates
                                      else "passed"))
    report.results.append(CheckResult(
        "move sequences unique", True,
        f"WARNING {repeated_moves} games repeat the moves of another game under another "
        f"game_id (--drop-duplicate-moves drops them from datasets)" if repeated_moves
        else "passed"))
    report.stats["duplicate_move_sequences"] = repeated_moves
    report.stats["game_length"] = _summary(lengths)
    report.stats["results_by_players_and_winner"] = {
        f"{n}p winner={w}": c for (n, w), c in sorted(wins.items(), key=str)}
    return report


def policy_entropy(batch: RowBatch) -> np.ndarray:
    """The Shannon entropy (nats) of each row's policy target, from the CSR arrays."""
    p = batch.policy_values.astype(np.float64)
    terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    csum = np.concatenate([[0.0], np.cumsum(terms)])
    local = batch.policy_indptr - batch.policy_indptr[0]
    return csum[local[1:]] - csum[local[:-1]]


def dataset_statistics(path: Path) -> dict[str, Any]:
    """Per-channel mean/std/min/max and the distributions of values, policy entropy and game
    length, in one bounded-memory pass (running sums per channel)."""
    meta = read_metadata(path)
    channels = meta["channels"]
    n = 0
    s = np.zeros(len(channels))
    s2 = np.zeros(len(channels))
    lo = np.full(len(channels), np.inf)
    hi = np.full(len(channels), -np.inf)
    values: list[np.ndarray] = []
    entropy: list[np.ndarray] = []
    rows_per_game: Counter[str] = Counter()
    for batch in iter_row_batches(path, BATCH_ROWS):
        if len(batch) == 0:
            continue
        f = batch.features.astype(np.float64)
        n += f.shape[0] * f.shape[2] * f.shape[3]
        s += f.sum(axis=(0, 2, 3))
        s2 += (f * f).sum(axis=(0, 2, 3))
        lo = np.minimum(lo, f.min(axis=(0, 2, 3)))
        hi = np.maximum(hi, f.max(axis=(0, 2, 3)))
        values.append(np.histogram(batch.values, bins=8, range=(-1, 1))[0])
        entropy.append(policy_entropy(batch))
        rows_per_game.update(batch.game_id.tolist())
    mean = s / max(n, 1)
    std = np.sqrt(np.maximum(s2 / max(n, 1) - mean * mean, 0))
    per_channel = {c: {"mean": round(float(m), 5), "std": round(float(d), 5),
                       "min": float(a) if n else None, "max": float(b) if n else None}
                   for c, m, d, a, b in zip(channels, mean, std, lo, hi)}
    return {
        "channels": per_channel,
        "values_histogram": {"edges": np.linspace(-1, 1, 9).round(3).tolist(),
                             "counts": (np.sum(values, axis=0).astype(int).tolist()
                                        if values else [0] * 8)},
        "policy_entropy": _summary(np.concatenate(entropy) if entropy else []),
        "rows_per_game": _summary(list(rows_per_game.values())),
    }
