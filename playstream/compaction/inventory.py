"""What the chunk store and the datasets folder hold, for `playstream status`: chunks and rows
per configuration, how far each stream is sealed, and the newest dataset version per
configuration with its age. Reads names, chunk metadata and manifests; never row data."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from playstream.chunks import ChunkStore
from playstream.compaction.publish import read_manifest
from playstream.dataset import read_metadata
from playstream.errors import PlaystreamError


@dataclass
class ConfigurationChunks:
    """The sealed chunks of one configuration."""

    config_key: str
    chunks: int = 0
    rows: int = 0
    games: int = 0


@dataclass
class StoreInventory:
    """``sealed_through``: per stream, one past its newest sealed position over every
    configuration (the offset a Kafka partition is sealed through)."""

    configurations: list[ConfigurationChunks] = field(default_factory=list)
    sealed_through: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0


@dataclass(frozen=True)
class DatasetVersion:
    """The version a configuration's dataset currently publishes (its ``current`` link)."""

    config_key: str
    version: str
    created_at: datetime
    rows: int
    games: int

    def age_s(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(timezone.utc)) - self.created_at).total_seconds()


def store_inventory(store: ChunkStore) -> StoreInventory:
    """Count the sealed chunks, their rows and games (from each chunk's metadata)."""
    inventory = StoreInventory(quarantined=sum(1 for _ in store.quarantined()))
    for key in store.config_keys():
        entry = ConfigurationChunks(key)
        for name, path in store.sealed(key):
            meta = read_metadata(path)
            entry.chunks += 1
            entry.rows += int(meta["rows"])
            entry.games += len(meta.get("extra", {}).get("games", []))
            through = inventory.sealed_through.get(name.stream, 0)
            inventory.sealed_through[name.stream] = max(through, name.last + 1)
        inventory.configurations.append(entry)
    return inventory


def newest_datasets(output_dir: Path, config_keys: list[str]) -> dict[str, DatasetVersion | None]:
    """The current version of ``output_dir/<key>`` for each key (None when none is
    published yet). A manifest that cannot be read raises (`read_manifest`)."""
    found: dict[str, DatasetVersion | None] = {}
    for key in config_keys:
        folder = output_dir / key
        if not folder.is_dir():
            found[key] = None
            continue
        manifest = read_manifest(folder)
        current = folder / "current"
        version = current.resolve().name if current.is_symlink() else folder.name
        try:
            created = datetime.fromisoformat(manifest["created_at"])
        except (KeyError, TypeError, ValueError):
            raise PlaystreamError("the manifest has no valid created_at",
                                  path=str(folder), config=key) from None
        totals = manifest.get("totals", {})
        found[key] = DatasetVersion(key, version, created, int(totals.get("rows", 0)),
                                    int(totals.get("games", 0)))
    return found
