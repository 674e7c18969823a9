"""The numbers of a dataset report, in one bounded-memory pass over the rows.

A report answers "does this data look like what self-play should produce?" without a
notebook: how many rows and games each configuration holds and how that grew version by
version, how long games are, whether the first seat wins too often, how the value and policy
targets are spread, where on the board moves land, and whether some games were played twice
under different ids (a seeding bug, or a retried worker that re-generated its games).

Rows are read with `iter_row_batches` and folded into fixed-size accumulators per batch. The
only per-game state is a few integers per game id (its rows, last move number, a hash of its
moves); it never holds a game's rows, so a shuffled dataset (a game's rows spread over shards)
is handled without sorting. Nothing here draws: `playstream.report.render` turns these numbers
into figures.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from playstream.compaction.publish import (CURRENT, MANIFEST_NAME, dataset_versions,
                                           is_single_file, manifest_sidecar, read_manifest)
from playstream.dataset import DatasetConfig, RowBatch, iter_row_batches, read_metadata
from playstream.errors import DatasetError
from playstream.quality import policy_entropy

# Rows are read with their feature planes decoded (float32 [C, H, W] each), which the report
# never looks at but cannot skip: a batch holds as many rows as fit this budget.
BATCH_BYTES = 32 << 20
MAX_BATCH_ROWS = 8192
# Move numbers above this share the last bucket of the entropy-by-move figure.
MAX_MOVE_BUCKETS = 1024
# Value targets lie in [-1, 1]; 41 bins of 0.05 centred on -1, -0.95, ..., 1 put the outcome
# values of 2- to 4-player games (+-1, 0, +-1/3) each in a bin of their own.
VALUE_EDGES = np.linspace(-1.025, 1.025, 42)
MAX_LISTED_DUPLICATES = 20
MAX_CONFIGS = 256
MAX_FILES = 100_000
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class VersionPoint:
    """One published version of a dataset, from its manifest (no rows are read)."""

    config_key: str
    version: str
    created_at: datetime
    rows: int
    games: int
    current: bool


@dataclass(frozen=True)
class DuplicateGroup:
    """Games whose played moves are identical; ``game_ids`` is cut to a few for display."""

    moves: int
    copies: int
    game_ids: tuple[str, ...]


@dataclass
class _Games:
    """Per game id: rows, last move number and the order-independent hash of its moves."""

    index: dict[str, int] = field(default_factory=dict)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last_move: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    move_hash: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))

    def slots(self, ids: np.ndarray) -> np.ndarray:
        for gid in ids.tolist():
            if gid not in self.index:
                self.index[gid] = len(self.index)
        need = len(self.index)
        if need > self.rows.size:
            grow = max(need, 2 * self.rows.size, 1024)
            self.rows = np.resize(self.rows, grow)
            self.rows[need:] = 0
            self.last_move = np.resize(self.last_move, grow)
            self.last_move[need:] = -1
            self.move_hash = np.resize(self.move_hash, grow)
            self.move_hash[need:] = 0
        return np.fromiter((self.index[g] for g in ids.tolist()), np.int64, ids.size)


@dataclass
class ConfigStats:
    """Everything the report shows about the current rows of one configuration."""

    config: DatasetConfig
    files: list[Path] = field(default_factory=list)
    rows: int = 0
    value_counts: np.ndarray = field(default_factory=lambda: np.zeros(41, np.int64))
    values_out_of_range: int = 0
    entropy_sum: np.ndarray = field(
        default_factory=lambda: np.zeros(MAX_MOVE_BUCKETS, np.float64))
    entropy_rows: np.ndarray = field(
        default_factory=lambda: np.zeros(MAX_MOVE_BUCKETS, np.int64))
    move_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rows_without_policy: int = 0
    # Outcomes of the games whose opening row (move 0) is in the data, by absolute seat.
    opening_games: int = 0
    seat_wins: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seat_value_sum: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    shared_top: int = 0
    _games: _Games = field(default_factory=_Games)

    def __post_init__(self) -> None:
        self.move_counts = np.zeros(self.config.policy_size, np.int64)
        self.seat_wins = np.zeros(self.config.num_players, np.int64)
        self.seat_value_sum = np.zeros(self.config.num_players, np.float64)

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def games(self) -> int:
        return len(self._games.index)

    @property
    def board_cells(self) -> bool:
        """Whether policy index ``i`` is board cell ``divmod(i, width)``: only when the policy
        has exactly one entry per cell (no pass move, no other action space)."""
        return self.config.policy_size == self.config.height * self.config.width

    def add(self, batch: RowBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        self.rows += n
        values = batch.values.astype(np.float64)
        inside = (values >= VALUE_EDGES[0]) & (values <= VALUE_EDGES[-1])
        self.values_out_of_range += int(n - inside.sum())
        self.value_counts += np.histogram(values[inside], bins=VALUE_EDGES)[0]
        moves = batch.move_number.astype(np.int64)
        bucket = np.clip(moves, 0, MAX_MOVE_BUCKETS - 1)
        self.entropy_sum += np.bincount(bucket, weights=policy_entropy(batch),
                                        minlength=MAX_MOVE_BUCKETS)
        self.entropy_rows += np.bincount(bucket, minlength=MAX_MOVE_BUCKETS)
        played = played_moves(batch)
        has_move = played >= 0
        self.rows_without_policy += int(n - has_move.sum())
        self.move_counts += np.bincount(played[has_move], minlength=self.config.policy_size)
        self._add_openings(batch, moves == 0)
        self._add_games(batch.game_id, moves, played)

    def _add_openings(self, batch: RowBatch, opening: np.ndarray) -> None:
        seats = self.config.num_players
        outcome = batch.values_mp[opening, :seats].astype(np.float64)
        if outcome.shape[0] == 0:
            return
        self.opening_games += outcome.shape[0]
        self.seat_value_sum += outcome.sum(axis=0)
        top = outcome.max(axis=1, keepdims=True)
        alone = (outcome == top).sum(axis=1) == 1
        winners = np.argmax(outcome[alone], axis=1)
        self.seat_wins += np.bincount(winners, minlength=seats)
        self.shared_top += int((~alone).sum())

    def _add_games(self, game_ids: np.ndarray, moves: np.ndarray, played: np.ndarray) -> None:
        ids, inverse = np.unique(game_ids, return_inverse=True)
        slot = self._games.slots(ids)[inverse]
        np.add.at(self._games.rows, slot, 1)
        np.maximum.at(self._games.last_move, slot, moves)
        # The sum (mod 2^64) of one hash per (move number, move) identifies the sequence of
        # played moves whatever order the rows arrive in: move numbers are unique per game.
        np.add.at(self._games.move_hash, slot, _mix64(moves, played))

    # --- results -------------------------------------------------------------------------

    def game_lengths(self) -> dict[int, int]:
        """Games by length in moves (the highest move number seen in the game, plus one)."""
        used = self._games.last_move[:self.games] + 1
        lengths, counts = np.unique(used, return_counts=True)
        return {int(a): int(b) for a, b in zip(lengths, counts)}

    def entropy_by_move(self) -> dict[int, float]:
        """Mean policy entropy (nats) of the rows at each move number that has rows."""
        seen = np.nonzero(self.entropy_rows)[0]
        return {int(m): float(self.entropy_sum[m] / self.entropy_rows[m]) for m in seen}

    def value_histogram(self) -> tuple[list[float], list[int]]:
        centres = (VALUE_EDGES[:-1] + VALUE_EDGES[1:]) / 2
        return [round(float(c), 3) for c in centres], self.value_counts.astype(int).tolist()

    def outcomes(self) -> dict[str, Any]:
        seats = self.config.num_players
        n = self.opening_games
        return {
            "games_with_opening_row": n,
            "wins_by_seat": {s + 1: int(self.seat_wins[s]) for s in range(seats)},
            "mean_value_by_seat": {s + 1: (round(float(self.seat_value_sum[s] / n), 4)
                                           if n else None) for s in range(seats)},
            "shared_or_drawn": self.shared_top,
            "first_seat_win_rate": round(float(self.seat_wins[0] / n), 4) if n else None,
        }

    def move_grid(self) -> np.ndarray | None:
        """Moves played per board cell [height, width], or None when policy indices are not
        board cells (then `move_counts` is a histogram over action indices)."""
        if not self.board_cells:
            return None
        return self.move_counts.reshape(self.config.height, self.config.width)

    def duplicates(self) -> tuple[int, list[DuplicateGroup]]:
        """(games that repeat an earlier game's move sequence, the largest groups)."""
        g = self._games
        n = self.games
        if n == 0:
            return 0, []
        ids = np.array(sorted(g.index, key=g.index.__getitem__), dtype=object)
        keys = np.stack([g.rows[:n].astype(np.uint64), g.last_move[:n].astype(np.uint64),
                         g.move_hash[:n]], axis=1)
        _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        repeated = np.nonzero(counts > 1)[0]
        largest = repeated[np.argsort(-counts[repeated], kind="stable")]
        groups = []
        for group in largest[:MAX_LISTED_DUPLICATES]:
            members = ids[inverse == group]
            groups.append(DuplicateGroup(moves=int(g.last_move[g.index[members[0]]] + 1),
                                         copies=int(counts[group]),
                                         game_ids=tuple(sorted(members)[:5])))
        return int((counts[repeated] - 1).sum()), groups


def played_moves(batch: RowBatch) -> np.ndarray:
    """The policy index of the move played in each row: the highest-probability entry of its
    target (the one-hot entry for a random agent; for search targets, the most visited move,
    the lowest index on a tie); -1 for a row with no policy entries."""
    n = len(batch)
    out = np.full(n, -1, np.int64)
    counts = np.diff(batch.policy_indptr)
    if batch.policy_values.size == 0:
        return out
    row = np.repeat(np.arange(n), counts)
    order = np.lexsort((batch.policy_indices, -batch.policy_values.astype(np.float64), row))
    first = np.concatenate(([True], row[order][1:] != row[order][:-1]))
    out[row[order][first]] = batch.policy_indices[order][first]
    return out


def _mix64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """splitmix64 of (a, b): a well-spread 64-bit hash per pair, vectorised."""
    with np.errstate(over="ignore"):
        z = (a.astype(np.uint64) << np.uint64(32)) ^ (b.astype(np.uint64) & np.uint64(0xFFFFFFFF))
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


# --- what a path holds -----------------------------------------------------------------------

@dataclass
class DatasetSources:
    """The files whose rows the report reads (the current version of each configuration) and
    the version history from the manifests."""

    path: Path
    files: list[Path] = field(default_factory=list)
    versions: list[VersionPoint] = field(default_factory=list)

    def total_rows(self) -> int:
        """The rows the report will read (for a progress bar), from the metadata alone."""
        return sum(int(read_metadata(f).get("rows", 0)) for f in self.files)


def find_sources(path: Path) -> DatasetSources:
    """A single ``.npz``, a version folder, a dataset directory (``current`` link), or a
    finalizer output folder holding one dataset directory per configuration."""
    path = Path(path)
    sources = DatasetSources(path)
    if path.is_file():
        if not is_single_file(path):
            raise DatasetError("not a .npz dataset", path=str(path), check="report")
        sources.files.append(path)
        if manifest_sidecar(path).is_file():
            sources.versions.append(_version_point(read_manifest(path), path.name, True))
        return sources
    if not path.is_dir():
        raise DatasetError("no such file or folder", path=str(path), check="report")
    if _is_dataset_dir(path) or (path / MANIFEST_NAME).is_file():
        _add_dataset(path, sources)
        return sources
    datasets = [p for p in sorted(path.iterdir()) if p.is_dir() and _is_dataset_dir(p)]
    if len(datasets) > MAX_CONFIGS:
        raise DatasetError(f"holds {len(datasets)} dataset folders, at most {MAX_CONFIGS}",
                           path=str(path), check="report")
    for sub in datasets:
        _add_dataset(sub, sources)
    if not sources.files:
        raise DatasetError("holds no dataset: expected a .npz file, a dataset folder with a "
                           f"{CURRENT!r} link, a version folder with {MANIFEST_NAME}, or a "
                           "finalizer output folder of dataset folders", path=str(path),
                           check="report")
    return sources


def _is_dataset_dir(path: Path) -> bool:
    return (path / CURRENT).is_symlink()


def _add_dataset(path: Path, sources: DatasetSources) -> None:
    if _is_dataset_dir(path):
        current = (path / os.readlink(path / CURRENT)).name
        for version in dataset_versions(path).values():
            sources.versions.append(_version_point(read_manifest(version), version.name,
                                                   version.name == current))
        folder = path / current
    else:  # one version folder
        folder = path
        sources.versions.append(_version_point(read_manifest(folder), folder.resolve().name,
                                               True))
    for output in read_manifest(folder).get("outputs", []):
        name = str(output.get("file", ""))
        if "/" in name or not name.endswith(".npz") or name.startswith("."):
            raise DatasetError(f"manifest lists {name[:80]!r}, not a file of the folder",
                               path=str(folder), check="manifest")
        sources.files.append(folder / name)
        if len(sources.files) > MAX_FILES:
            raise DatasetError(f"more than {MAX_FILES} dataset files", path=str(path),
                               check="report")


def _version_point(manifest: dict[str, Any], version: str, current: bool) -> VersionPoint:
    totals = manifest.get("totals", {})
    try:
        created = datetime.fromisoformat(str(manifest["created_at"]))
        return VersionPoint(config_key=str(manifest["config_key"]), version=version,
                            created_at=(created if created.tzinfo is not None
                                        else created.replace(tzinfo=timezone.utc)),
                            rows=int(totals["rows"]), games=int(totals["games"]),
                            current=current)
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"manifest field is missing or malformed: {err}",
                           path=version, check="manifest") from None


# --- the whole report ------------------------------------------------------------------------

@dataclass
class ReportStats:
    source: Path
    configs: dict[str, ConfigStats]
    versions: list[VersionPoint]
    dead_letter_reasons: Counter[str] | None = None


def batch_rows(config: DatasetConfig, budget: int = BATCH_BYTES) -> int:
    """Rows per batch so that a decoded batch stays within ``budget`` bytes."""
    row_bytes = 4 * (len(config.channels) * config.height * config.width
                     + len(config.global_names) + 8)
    return max(1, min(MAX_BATCH_ROWS, budget // row_bytes))


def collect(sources: DatasetSources, *,
            on_rows: Callable[[int], None] | None = None) -> ReportStats:
    """Read every current row of ``sources`` once (checksums verified) and fold it in."""
    configs: dict[str, ConfigStats] = {}
    for file in sources.files:
        config = DatasetConfig.from_metadata(read_metadata(file))
        stats = configs.get(config.key())
        if stats is None:
            if len(configs) >= MAX_CONFIGS:
                raise DatasetError(f"more than {MAX_CONFIGS} configurations",
                                   path=str(sources.path), check="report")
            stats = configs[config.key()] = ConfigStats(config)
        stats.files.append(file)
        for batch in iter_row_batches(file, batch_rows(config)):
            stats.add(batch)
            if on_rows is not None:
                on_rows(len(batch))
    versions = sorted(sources.versions, key=lambda v: (v.config_key, v.created_at, v.version))
    return ReportStats(sources.path, configs, versions)
