"""Deleting chunks that are safely in a published dataset.

A chunk goes only when all three hold: the current manifest lists it with the same sha256
(what was published is exactly this object), or names it as superseded (its range overlaps the
chosen cover of its stream, `chunk_cover`, so no dataset reads it); it is older than the limit
(room for re-windowing and for a dataset rebuild; the age is the object's modification time,
which a store gives without reading the chunk); and it is not its stream's newest range in
the store. The newest name is how a restarted chunk writer finds where to resume
(`ChunkWriter._resume` reads the highest range of the stream over every configuration, and
its group), so deleting it would replay the stream, or re-seal a group, from an older
position. The rules are the same on a local folder and on an object store (deletes go
through the storage port).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from playstream.chunks import ChunkName, ChunkStore
from playstream.dataset.config import key_scope
from playstream.errors import PlaystreamError

log = logging.getLogger(__name__)


def _published(manifests: list[dict[str, Any]], config_key: str
               ) -> tuple[set[tuple[str, str]], set[str]]:
    """(file, sha256) of every chunk of ``config_key`` the manifests list, and the files they
    name as superseded."""
    listed, superseded = set(), set()
    for m in manifests:
        listed |= {(c["file"], c["sha256"]) for c in m.get("chunks", [])
                   if c.get("config_key") == config_key}
        if m.get("config_key") == config_key:
            superseded.update(m.get("superseded", []))
    return listed, superseded


def apply_retention(store: ChunkStore, config_key: str, manifests: list[dict[str, Any]], *,
                    older_than_s: float, now: datetime | None = None) -> list[Path | str]:
    """Delete the chunks of ``config_key`` that every rule allows (``manifests``: the current
    manifests); returns their old files (local store) or URLs (object store)."""
    if older_than_s < 0:
        raise PlaystreamError(f"older_than_s must not be negative, got {older_than_s}",
                              field="older_than_s")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise PlaystreamError("now must carry a time zone (UTC)", field="now")
    cutoff = (now - timedelta(seconds=older_than_s)).timestamp()
    listed, superseded = _published(manifests, config_key)
    names = {name for name, _ in listed} | superseded
    newest: dict[str, ChunkName] = {}
    deleted: list[Path | str] = []
    for info in store.storage.list(f"{store.check_key(config_key)}/"):
        name = ChunkName.parse(info.name[len(config_key) + 1:])
        if name is None or name.filename not in names:
            continue
        if name.stream not in newest:
            newest[name.stream] = _newest_range(store, name.stream, key_scope(config_key))
        if (name.first, name.last) == (newest[name.stream].first, newest[name.stream].last):
            continue
        if info.mtime > cutoff:
            continue
        if name.filename not in superseded \
                and (name.filename, store.sha256(config_key, name)) not in listed:
            continue
        store.delete(config_key, name)
        log.info("chunk deleted by retention", extra={"path": store.url(config_key, name)})
        deleted.append(store.local_path(config_key, name) or store.url(config_key, name))
    return deleted


def _newest_range(store: ChunkStore, stream: str, scope: str) -> ChunkName:
    return max((n for names in store.stream_chunks(stream, scope).values() for n in names),
               key=lambda n: n.last)
