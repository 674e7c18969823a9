"""Where chunks live on disk, who may write a stream, and where bad chunks go.

Layout::

    <root>/<config key>/<stream>+<first>+<last>.npz     sealed chunks
    <root>/<config key>/.<stream>+...<uuid>.tmp           in-progress (swept at start-up)
    <root>/locks/<stream>.lock                            one writer per stream (flock)
    <root>/quarantine/<config key>/<chunk> + .reason.json chunks that failed a check
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from playstream.chunks.naming import ChunkName, validate_stream_id
from playstream.durable import fsync_dir
from playstream.errors import ChunkError
from playstream.locks import ProcessLock, holder_of

_CONFIG_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
TEMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class SealedChunk:
    """What a seal announces: enough to find, verify and explain the chunk."""

    path: Path
    config_key: str
    name: ChunkName
    rows: int
    games: int
    sha256: str


class ChunkStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ChunkError(f"cannot create chunk folder: {err.strerror}",
                             path=str(self.root)) from None

    def config_dir(self, config_key: str, *, create: bool = False) -> Path:
        if not _CONFIG_KEY.match(config_key) or config_key in ("locks", "quarantine"):
            raise ChunkError(f"invalid configuration key {config_key!r}")
        d = self.root / config_key
        if create:
            d.mkdir(parents=True, exist_ok=True)
        return d

    def config_keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and _CONFIG_KEY.match(p.name)
                      and p.name not in ("locks", "quarantine"))

    def sealed(self, config_key: str) -> list[tuple[ChunkName, Path]]:
        """Sealed chunks of one configuration, in (stream, first) order."""
        d = self.config_dir(config_key)
        if not d.is_dir():
            return []
        found = [(n, d / p) for p in os.listdir(d) if (n := ChunkName.parse(p)) is not None]
        return sorted(found)

    def scoped_keys(self, scope: str) -> list[str]:
        """Configuration keys written by one encoder (see `encoder_scope`)."""
        return [k for k in self.config_keys() if k.endswith(f"_{scope}")]

    def stream_chunks(self, stream: str, scope: str) -> dict[str, list[ChunkName]]:
        """Every sealed chunk of a stream written by encoder ``scope``, by configuration."""
        validate_stream_id(stream)
        out: dict[str, list[ChunkName]] = {}
        for key in self.scoped_keys(scope):
            names = [n for n, _ in self.sealed(key) if n.stream == stream]
            if names:
                out[key] = names
        return out

    def lock_stream(self, stream: str, scope: str, *, timeout: float = 0.0) -> ProcessLock:
        """Take the writer lock of (stream, encoder scope), waiting up to ``timeout`` seconds
        (a revoked owner may still be finishing); ChunkError if another process keeps it."""
        validate_stream_id(stream)
        locks = self.root / "locks"
        locks.mkdir(exist_ok=True)
        path = locks / f"{stream}@{scope}.lock"
        lock = ProcessLock.acquire(path, timeout=timeout)
        if lock is None:
            raise ChunkError("another writer holds this stream's lock", stream=stream,
                             path=str(path), holder_pid=holder_of(path))
        return lock

    def temp_path(self, config_key: str, name: ChunkName, token: str) -> Path:
        return self.config_dir(config_key, create=True) / f".{name.filename}.{token}{TEMP_SUFFIX}"

    def sweep_temp(self, stream: str, scope: str) -> list[Path]:
        """Remove a crashed writer's leftovers for ``stream`` (call with its lock held)."""
        validate_stream_id(stream)
        removed = []
        for key in self.scoped_keys(scope):
            d = self.config_dir(key)
            for p in d.iterdir():
                if p.name.startswith(f".{stream}+") and TEMP_SUFFIX in p.name:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                    removed.append(p)
        return removed

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a bad chunk aside with a reason file; it is never read into a dataset again."""
        key = path.parent.name
        qdir = self.root / "quarantine" / key
        qdir.mkdir(parents=True, exist_ok=True)
        target = qdir / path.name
        os.replace(path, target)
        (qdir / f"{path.name}.reason.json").write_text(json.dumps({
            "chunk": path.name, "config": key, "reason": reason,
            "quarantined_at": datetime.now(timezone.utc).isoformat()}, indent=2) + "\n")
        fsync_dir(path.parent)
        return target

    def quarantined(self) -> Iterator[Path]:
        q = self.root / "quarantine"
        if q.is_dir():
            yield from sorted(p for p in q.rglob("*.npz"))
