"""Rolling chunks for one source stream: append rows, seal atomically, resume from names.

All configurations that receive rows from one stream range are sealed together as a *group*:
every chunk of the group carries the same range and lists the group's configurations. After a
crash in the middle of sealing a group, `resume` sees the incomplete group, rewinds to its first
position and re-seals exactly that range for the missing configurations only. So every
position of the stream lands in exactly one sealed chunk per configuration, whatever the crash.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from playstream.chunks.metadata import (MAX_REASON_CHARS, MAX_SKIPPED_LISTED, ChunkMetadata,
                                       ChunkOrigin, SkippedRecord)
from playstream.chunks.naming import ChunkName, validate_stream_id
from playstream.chunks.store import ChunkStore, SealedChunk
from playstream.dataset import DatasetConfig, NPZDatasetWriter, RowBatch, read_metadata
from playstream.errors import ChunkError
from playstream.locks import ProcessLock

WRITE_BYTES = 8 << 20
"""The open rows go to the dataset writer in joined batches of about this size: its checks and
spooling cost per call (a stream's batches are single games of a few dozen rows), and the
joined copy is the only memory a seal adds to the open chunk."""


def batch_nbytes(batch: RowBatch) -> int:
    return sum(getattr(batch, f.name).nbytes for f in fields(batch))


def joined_batches(batches: list[RowBatch], max_bytes: int = WRITE_BYTES
                   ) -> Iterator[RowBatch]:
    """``batches`` in order, consecutive ones joined while they stay under ``max_bytes``
    (a batch larger than that alone)."""
    run: list[RowBatch] = []
    size = 0
    for batch in batches:
        nbytes = batch_nbytes(batch)
        if run and size + nbytes > max_bytes:
            yield run[0] if len(run) == 1 else RowBatch.concat(run)
            run, size = [], 0
        run.append(batch)
        size += nbytes
    if run:
        yield run[0] if len(run) == 1 else RowBatch.concat(run)


def file_sha256(path: os.PathLike[str] | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class _OpenPart:
    """The rows of one configuration in the open chunk."""

    config: DatasetConfig
    batches: list[RowBatch] = field(default_factory=list)
    games: list[str] = field(default_factory=list)
    moves: list[str | None] = field(default_factory=list)  # hex moves digest per game
    rows: int = 0
    nbytes: int = 0


@dataclass
class _Recovery:
    """An incomplete group found at start-up: re-seal [first, last] for ``missing``."""

    first: int
    last: int
    group: list[str]
    missing: set[str]


class ChunkWriter:
    """Rolling, atomically sealed chunks of one source stream for one encoder (the chunk
    half of the seed's exporter; `IncrementalExporter` feeds it the encoded rows).

    ``scope`` (`encoder_scope` of the feature version and history length) keeps writers of
    different encoders on one stream apart: each has its own lock and its own progress.

    ``add`` takes the rows of one record at its stream position; positions must increase.
    Open rows are held in memory, so chunks seal when they reach ``max_rows`` rows or
    ``max_bytes`` bytes (the writer's memory bound), when the open chunk is older than
    ``max_age_s`` (checked on ``add`` and ``tick``), and on ``finalize``. ``always`` names
    configurations that get a chunk for every range even without rows, so that progress
    through a file of only skipped records is recorded too. ``origin`` (a game file or a
    Kafka partition) goes into every chunk's `ChunkMetadata`.
    """

    def __init__(self, store: ChunkStore, stream: str, scope: str, *, max_rows: int = 10_000,
                 max_bytes: int = 64 << 20, max_age_s: float | None = None,
                 lock_timeout: float = 0.0,
                 origin: ChunkOrigin = ChunkOrigin(),
                 always: tuple[DatasetConfig, ...] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_rows < 1:
            raise ChunkError("max_rows must be at least 1", stream=stream)
        self.store = store
        self.stream = validate_stream_id(stream)
        self.scope = scope
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.origin = origin
        self.always = always
        self._clock = clock
        self._lock: ProcessLock | None = store.lock_stream(stream, scope, timeout=lock_timeout)
        store.sweep_scratch(stream, scope)   # a crashed local writer's leftovers (lock held)
        self._scratch: Path = store.scratch(stream, scope)
        self._sealed: dict[str, list[ChunkName]] = {}
        self._recovery: _Recovery | None = None
        self._next = 0
        self._reset_open()
        self._resume()

    # -- progress -------------------------------------------------------------------------
    @property
    def next_position(self) -> int:
        """Where the source must be read from: one past the last sealed position, or the
        start of an incomplete group."""
        return self._next

    def _chunk_metadata(self, key: str, name: ChunkName) -> ChunkMetadata:
        """The metadata of a sealed chunk (downloaded into the scratch folder from an object
        store, and removed again)."""
        path, _ = self.store.fetch(key, name, self._scratch)
        try:
            return ChunkMetadata.read(path)
        finally:
            if not self.store.is_local:
                path.unlink(missing_ok=True)

    def _resume(self) -> None:
        self._sealed = self.store.stream_chunks(self.stream, self.scope)
        ranges: dict[tuple[int, int], dict[str, ChunkName]] = {}
        for key, names in self._sealed.items():
            for n in names:
                ranges.setdefault((n.first, n.last), {})[key] = n
        if not ranges:
            self._next = 0
            return
        first, last = max(ranges, key=lambda r: r[1])
        present = ranges[(first, last)]
        any_key = next(iter(present))
        group = self._chunk_metadata(any_key, present[any_key]).group
        missing = set(group) - set(present)
        if missing:
            self._recovery = _Recovery(first, last, group, missing)
            self._next = first
        else:
            self._next = last + 1

    # -- appending ------------------------------------------------------------------------
    def _reset_open(self) -> None:
        self._parts: dict[str, _OpenPart] = {}
        self._first: int | None = None
        self._last: int | None = None
        self._opened_at: float | None = None
        self._skipped: list[SkippedRecord] = []
        self._skipped_count = 0

    @property
    def open_rows(self) -> int:
        return sum(p.rows for p in self._parts.values())

    def add(self, position: int, config: DatasetConfig | None = None,
            rows: RowBatch | None = None, *, game_id: str | None = None,
            moves_digest: bytes | None = None,
            skipped: str | None = None) -> list[SealedChunk]:
        """Record position ``position``: its rows for ``config``, or why it was skipped.
        ``moves_digest`` (`GameRecord.moves_digest`) lets compaction find the same game
        under two ids."""
        if position < self._next or (self._last is not None and position <= self._last):
            raise ChunkError(f"position {position} is not after the last one "
                             f"({self._last if self._last is not None else self._next - 1})",
                             stream=self.stream)
        sealed: list[SealedChunk] = []
        rec = self._recovery
        if rec is not None and position > rec.last and self._first is not None:
            sealed += self._seal()
        if self._first is None:
            self._first = position
            self._opened_at = self._clock()
        self._last = position
        if rows is not None and config is not None:
            if not config.key().endswith(f"_{self.scope}"):
                raise ChunkError(f"configuration {config.key()} is not of this writer's "
                                 f"encoder {self.scope}", stream=self.stream)
            part = self._parts.setdefault(config.key(), _OpenPart(config))
            if part.config != config:
                raise ChunkError(f"two configurations share the key {config.key()!r}",
                                 stream=self.stream)
            part.batches.append(rows)
            part.rows += len(rows)
            part.nbytes += batch_nbytes(rows)
            if game_id is not None:
                part.games.append(game_id)
                part.moves.append(None if moves_digest is None else moves_digest.hex())
        elif skipped is not None:
            self._skipped_count += 1
            if len(self._skipped) < MAX_SKIPPED_LISTED:
                self._skipped.append(SkippedRecord(position, skipped[:MAX_REASON_CHARS]))
        rec = self._recovery
        if rec is not None:
            if position >= rec.last:
                sealed += self._seal()
        elif (self.open_rows >= self.max_rows or self._too_old()
              or sum(p.nbytes for p in self._parts.values()) >= self.max_bytes):
            sealed += self._seal()
        return sealed

    def _too_old(self) -> bool:
        return (self.max_age_s is not None and self._opened_at is not None
                and self._clock() - self._opened_at >= self.max_age_s)

    def tick(self) -> list[SealedChunk]:
        """Seal on age even when no record arrives (quiet streams must not hold rows back)."""
        if self._recovery is None and self._first is not None and self._too_old():
            return self._seal()
        return []

    def finalize(self) -> list[SealedChunk]:
        """Seal whatever is open (the end of a game file, a shutdown)."""
        return self._seal() if self._first is not None else []

    def discard(self) -> None:
        """Drop the open chunk (partition revoked): its records will be read again by the
        next owner, who resumes from the sealed names."""
        self._reset_open()

    def close(self) -> None:
        self.discard()
        shutil.rmtree(self._scratch, ignore_errors=True)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- sealing --------------------------------------------------------------------------
    def _seal(self) -> list[SealedChunk]:
        assert self._first is not None and self._last is not None
        rec = self._recovery
        first, last = self._first, self._last
        for cfg in self.always:
            self._parts.setdefault(cfg.key(), _OpenPart(cfg))
        if rec is not None:
            if (first, last) != (rec.first, rec.last):
                raise ChunkError(f"re-reading the incomplete group {rec.first}..{rec.last} "
                                 f"gave the range {first}..{last}: the source changed",
                                 stream=self.stream)
            group = sorted(rec.group)
            targets = sorted(rec.missing)
        else:
            group = sorted(self._parts)
            targets = group
        name = ChunkName(self.stream, first, last)
        if not self.store.is_local:
            # no lock on an object store: another owner may have sealed since we resumed
            for key in targets:
                self._sealed[key] = self.store.chunks(key, self.stream)
        # Completing an incomplete group on an object store may overlap chunks that another
        # owner sealed meanwhile with other boundaries; the compaction cover counts each
        # position once, and the group must be completed for resume to move past it.
        completing = rec is not None and not self.store.is_local
        for key in targets if not completing else ():
            for other in self._sealed.get(key, []):
                if other.overlaps(name) and (self.store.is_local or other != name):
                    raise ChunkError(f"range {first}..{last} overlaps the sealed chunk "
                                     f"{other.filename}; refusing to seal a duplicate",
                                     stream=self.stream, config=key)
        if not targets:
            self._next = last + 1
            self._reset_open()
            return []
        built = [(key, *self._build(key, name, group)) for key in targets]
        sealed = []
        for key, path, meta in built:
            digest = file_sha256(path)
            try:
                if not self.store.seal(key, name, path):
                    # sealed by someone else (a zombie owner, a lost response): the same range
                    # of the same stream with the same encoder; adopt it if its rows agree
                    meta, digest = self._adopt(key, name, meta)
            finally:
                path.unlink(missing_ok=True)
            part = self._parts.get(key)
            if name not in self._sealed.setdefault(key, []):
                self._sealed[key].append(name)
            sealed.append(SealedChunk(self.store.object_name(key, name), key, name,
                                      part.rows if part else 0, len(part.games) if part else 0,
                                      digest, meta.sealed_at, self.store.local_path(key, name)))
        self._recovery = None
        self._next = last + 1
        self._reset_open()
        return sealed

    def _build(self, key: str, name: ChunkName, group: list[str]
               ) -> tuple[Path, ChunkMetadata]:
        """Write the chunk of ``key`` as a local file in the scratch folder."""
        part = self._parts.get(key)
        if part is None:
            raise ChunkError(f"no rows for configuration {key} while re-sealing "
                             f"{name.filename}: the source changed", stream=self.stream)
        path = self._scratch / f"{key}.{name.filename}"
        meta = ChunkMetadata(stream=self.stream, first=name.first, last=name.last,
                             origin=self.origin, group=tuple(group), games=tuple(part.games),
                             moves_digests=tuple(part.moves), skipped=tuple(self._skipped),
                             skipped_count=self._skipped_count,
                             sealed_at=datetime.now(timezone.utc))
        # Not durable: the store's seal makes (and fsyncs) the copy that counts.
        with NPZDatasetWriter(path, part.config, extra_metadata=meta.to_metadata(),
                              durable=False) as writer:
            for batch in joined_batches(part.batches):
                writer.write(batch)
        return path, meta

    def _adopt(self, key: str, name: ChunkName, ours: ChunkMetadata
               ) -> tuple[ChunkMetadata, str]:
        """The metadata and sha256 of a chunk someone else sealed under our name, if it holds
        what we would have written (same games, skipped records and group: the content is a
        function of the range and the encoder; only the seal time differs). ChunkError
        otherwise: the source or the encoder changed under one name."""
        path, digest = self.store.fetch(key, name, self._scratch)
        try:
            theirs = ChunkMetadata.read(path)
            rows = int(read_metadata(path)["rows"])
        finally:
            if not self.store.is_local:
                path.unlink(missing_ok=True)
        part = self._parts[key]
        if (theirs.games, theirs.skipped_count, theirs.group, rows) != \
                (ours.games, ours.skipped_count, ours.group, part.rows):
            raise ChunkError("a sealed chunk with this name already exists and holds other "
                             "rows", stream=self.stream, path=self.store.url(key, name))
        return theirs, digest
