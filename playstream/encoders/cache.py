"""ExportCache (the seed's name): encoded rows kept on disk so a game is encoded once.

An entry holds every row of one game, i.e. the rows keyed by (game_id, move_number), for one
encoder (game and version), feature version, history length and sampling. The record's
content digest is part of the key, so a different game reusing a game_id never reads stale
rows. File names are a hash of the key, never a record field.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from playstream.dataset import NPZDatasetWriter, RowBatch, load_npz_dataset
from playstream.encoders.versions import ExportSettings
from playstream.errors import DatasetError
from playstream.records import GameRecord


class ExportCache:
    def __init__(self, cache_dir: str | Path) -> None:
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def key(self, record: GameRecord, settings: ExportSettings) -> str:
        ident = {
            "game_id": record.game_id,
            "record": hashlib.sha256(record.to_msgpack()).hexdigest(),
            "encoder": f"{record.game}-{record.game_version}",
            "feature_version": settings.feature_version,
            "history_length": settings.history_length,
            "sample_every": settings.sample_every,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    def get_or_compute(self, record: GameRecord, settings: ExportSettings,
                       compute: Callable[[], RowBatch]) -> RowBatch:
        """Rows from the cache, or from ``compute`` (then stored). A damaged entry is
        recomputed and replaced rather than trusted."""
        path = self.dir / f"{self.key(record, settings)}.npz"
        if path.exists():
            try:
                rows = load_npz_dataset(path, verify=True).rows
                self.hits += 1
                return rows
            except DatasetError:
                path.unlink(missing_ok=True)
        self.misses += 1
        rows = compute()
        with NPZDatasetWriter(path, settings.dataset_config()) as writer:
            writer.write(rows)
        return rows
