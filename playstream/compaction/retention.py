"""Deleting chunks that are safely in a published dataset.

A chunk goes only when all three hold: a published manifest lists it with the same sha256
(what was published is exactly this file), it is older than the limit (room for re-windowing
and for a dataset rebuild), and it is not its stream's newest range in the store. The newest
name is how a restarted chunk writer finds where to resume (`ChunkWriter._resume` reads the
highest range of the stream over every configuration, and its group), so deleting it would
replay the stream, or re-seal a group, from an older position.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from playstream.dataset.config import key_scope
from playstream.chunks import ChunkMetadata, ChunkName, ChunkStore
from playstream.durable import fsync_dir
from playstream.chunks.writer import file_sha256
from playstream.errors import PlaystreamError

log = logging.getLogger(__name__)


def _published(manifests: list[dict[str, Any]], config_key: str) -> set[tuple[str, str]]:
    """(file name, sha256) of every chunk of ``config_key`` the manifests list."""
    return {(c["file"], c["sha256"]) for m in manifests for c in m.get("chunks", [])
            if c.get("config_key") == config_key}


def apply_retention(store: ChunkStore, config_key: str, manifests: list[dict[str, Any]], *,
                    older_than_s: float, now: datetime | None = None) -> list[Path]:
    """Delete the chunks of ``config_key`` that every rule allows; returns their old paths."""
    if older_than_s < 0:
        raise PlaystreamError(f"older_than_s must not be negative, got {older_than_s}",
                              field="older_than_s")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise PlaystreamError("now must carry a time zone (UTC)", field="now")
    cutoff = now - timedelta(seconds=older_than_s)
    published = _published(manifests, config_key)
    names = {name for name, _ in published}
    newest: dict[str, ChunkName] = {}
    deleted: list[Path] = []
    for name, path in store.sealed(config_key):
        if name.filename not in names:
            continue
        if name.stream not in newest:
            newest[name.stream] = _newest_range(store, name.stream, key_scope(config_key))
        if (name.first, name.last) == (newest[name.stream].first, newest[name.stream].last):
            continue
        if ChunkMetadata.read(path).sealed_at > cutoff \
                or (name.filename, file_sha256(path)) not in published:
            continue
        os.unlink(path)
        log.info("chunk deleted by retention", extra={"path": str(path)})
        deleted.append(path)
    if deleted:
        fsync_dir(store.config_dir(config_key))
    return deleted


def _newest_range(store: ChunkStore, stream: str, scope: str) -> ChunkName:
    return max((n for names in store.stream_chunks(stream, scope).values() for n in names),
               key=lambda n: n.last)
