"""Where chunks live, who may write a stream, and where bad chunks go, on any storage port
backend (a local folder or ``s3://bucket/prefix``, see `playstream.storage`).

Layout (object names, relative to the store)::

    <config key>/<stream>+<first>+<last>.npz               sealed chunks
    quarantine/<config key>/<chunk> + <chunk>.reason.json   chunks that failed a check

Writers build a chunk as a local file in a scratch folder and then seal it with the port's
``create_if_absent``: on a local store a temp file, fsync and ``os.link``, on S3 a conditional
put (``If-None-Match: *``). A local store also keeps one writer per stream with a ``flock``
(``<root>/locks/<stream>@<scope>.lock``, released by the kernel even on SIGKILL); an object
store has no lock, and a writer that lost its stream is handled by sealing only names that do
not overlap what it lists and by the compaction cover (`chunk_cover`), see docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, TypeVar

from playstream.chunks.naming import ChunkName, validate_stream_id
from playstream.errors import ChunkError, StorageError
from playstream.locks import ProcessLock, holder_of
from playstream.storage import LocalStorage, Storage, open_storage

_CONFIG_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_RESERVED_KEYS = ("locks", "quarantine")
SCRATCH = ".playstream-tmp-scratch"   # a reserved name: never listed as an object
COPY_BLOCK = 1 << 20
STORE_RETRY_S = 120.0   # how long seals and listings wait out an unreachable object store

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SealedChunk:
    """What a seal announces: enough to find, verify and explain the chunk. ``object_name``
    is store-relative (the same on every machine); ``path`` is the file on a local store."""

    object_name: str
    config_key: str
    name: ChunkName
    rows: int
    games: int
    sha256: str
    sealed_at: datetime
    path: Path | None = None


def _context(err: StorageError) -> dict[str, object]:
    """A storage error's context for a ChunkError: ``name`` becomes ``object`` (a log record
    has an attribute ``name`` of its own, which structured log fields must not overwrite)."""
    return {("object" if k == "name" else k): v for k, v in err.context.items()
            if k not in ("path", "url")}


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(COPY_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


class ChunkStore:
    """The chunks of one store. ``location`` is a path, an ``s3://bucket/prefix`` URL, or a
    `Storage` already opened."""

    def __init__(self, location: str | os.PathLike[str] | Storage) -> None:
        self.storage: Storage = open_storage(location)
        self.root: Path | None = None
        if isinstance(self.storage, LocalStorage):
            self.root = self.storage.root
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ChunkError(f"cannot create chunk folder: {err.strerror}",
                                 path=str(self.root)) from None

    @property
    def location(self) -> str:
        return self.storage.location

    @property
    def is_local(self) -> bool:
        return self.root is not None

    # -- names ----------------------------------------------------------------------------
    @staticmethod
    def check_key(config_key: str) -> str:
        if not _CONFIG_KEY.match(config_key) or config_key in _RESERVED_KEYS:
            raise ChunkError(f"invalid configuration key {config_key!r}")
        return config_key

    def object_name(self, config_key: str, name: ChunkName) -> str:
        return f"{self.check_key(config_key)}/{name.filename}"

    def url(self, config_key: str, name: ChunkName) -> str:
        return self.storage.url(self.object_name(config_key, name))

    def local_path(self, config_key: str, name: ChunkName) -> Path | None:
        """The chunk's file on a local store (None on an object store)."""
        return None if self.root is None else self.root / self.object_name(config_key, name)

    def config_dir(self, config_key: str) -> Path:
        """The folder of one configuration on a local store (tools and tests poke at files)."""
        if self.root is None:
            raise ChunkError("an object store has no local folders", path=self.location)
        return self.root / self.check_key(config_key)

    # -- listing --------------------------------------------------------------------------
    def _list(self, prefix: str) -> Iterable[str]:
        try:
            return self._retrying(prefix or "(all)",
                                  lambda: [o.name for o in self.storage.list(prefix)])
        except StorageError as err:
            raise ChunkError(f"cannot list the chunk store: {err.message}",
                             path=self.location, **_context(err)) from None

    def config_keys(self) -> list[str]:
        keys = set()
        for obj in self._list(""):
            key, sep, rest = obj.partition("/")
            if sep and "/" not in rest and _CONFIG_KEY.match(key) \
                    and key not in _RESERVED_KEYS and ChunkName.parse(rest) is not None:
                keys.add(key)
        return sorted(keys)

    def chunks(self, config_key: str, stream: str | None = None) -> list[ChunkName]:
        """Sealed chunks of one configuration (of one stream), in (stream, first) order."""
        prefix = f"{self.check_key(config_key)}/"
        if stream is not None:
            prefix += f"{validate_stream_id(stream)}+"
        found = []
        for obj in self._list(prefix):
            rest = obj[len(config_key) + 1:]
            if "/" not in rest and (n := ChunkName.parse(rest)) is not None \
                    and (stream is None or n.stream == stream):
                found.append(n)
        return sorted(found)

    def sealed(self, config_key: str) -> list[tuple[ChunkName, Path]]:
        """Sealed chunks and their files, on a local store."""
        folder = self.config_dir(config_key)
        return [(n, folder / n.filename) for n in self.chunks(config_key)]

    def scoped_keys(self, scope: str) -> list[str]:
        """Configuration keys written by one encoder (see `encoder_scope`)."""
        return [k for k in self.config_keys() if k.endswith(f"_{scope}")]

    def stream_chunks(self, stream: str, scope: str) -> dict[str, list[ChunkName]]:
        """Every sealed chunk of a stream written by encoder ``scope``, by configuration."""
        validate_stream_id(stream)
        out: dict[str, list[ChunkName]] = {}
        for key in self.scoped_keys(scope):
            names = self.chunks(key, stream)
            if names:
                out[key] = names
        return out

    # -- writers --------------------------------------------------------------------------
    def lock_stream(self, stream: str, scope: str, *,
                    timeout: float = 0.0) -> ProcessLock | None:
        """On a local store, take the writer lock of (stream, encoder scope), waiting up to
        ``timeout`` seconds (a revoked owner may still be finishing); ChunkError if another
        process keeps it. An object store has no lock (None): see the module docstring."""
        validate_stream_id(stream)
        if self.root is None:
            return None
        locks = self.root / "locks"
        locks.mkdir(exist_ok=True)
        path = locks / f"{stream}@{scope}.lock"
        lock = ProcessLock.acquire(path, timeout=timeout)
        if lock is None:
            raise ChunkError("another writer holds this stream's lock", stream=stream,
                             path=str(path), holder_pid=holder_of(path))
        return lock

    def scratch(self, stream: str, scope: str) -> Path:
        """A fresh private folder where a writer builds its chunks before sealing them: inside
        the root of a local store (same file system, invisible to listings), in the system
        temp folder for an object store. Remove it with `drop_scratch`."""
        validate_stream_id(stream)
        if self.root is not None:
            base = self.root / SCRATCH
            base.mkdir(exist_ok=True)
        else:
            base = Path(tempfile.gettempdir())
        return Path(tempfile.mkdtemp(prefix=f"{stream}@{scope}.", dir=base))

    def sweep_scratch(self, stream: str, scope: str) -> list[Path]:
        """Remove a crashed local writer's scratch folders for ``stream`` (lock held)."""
        validate_stream_id(stream)
        if self.root is None or not (self.root / SCRATCH).is_dir():
            return []
        removed = [p for p in (self.root / SCRATCH).iterdir()
                   if p.name.startswith(f"{stream}@{scope}.")]
        for p in removed:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        return removed

    def seal(self, config_key: str, name: ChunkName, built: Path) -> bool:
        """Create the chunk from the local file ``built`` unless the name exists (True if
        this call created it). Large files go up in parts on S3. An unreachable store is
        retried (`_retrying`); a retry that finds the name taken returns False, and the
        writer then compares the content (a first attempt whose answer was lost)."""
        obj = self.object_name(config_key, name)
        try:
            return self._retrying(obj, lambda: self.storage.create_if_absent(obj, built))
        except StorageError as err:
            raise ChunkError(f"cannot seal the chunk: {err.message}",
                             path=self.url(config_key, name), **_context(err)) from None

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, retried for up to ``STORE_RETRY_S`` seconds while an object store
        cannot be reached at all (a restarting server: no HTTP status; botocore has already
        retried each request). A local store, and any answer from the server, fail at once."""
        deadline = time.monotonic() + STORE_RETRY_S
        delay = 0.5
        while True:
            try:
                return call()
            except StorageError as err:
                if self.root is not None or err.context.get("status") is not None \
                        or time.monotonic() + delay > deadline:
                    raise
                log.warning("chunk store unreachable; retrying",
                            extra={"chunk": what, "error": err.message, "retry_in_s": delay})
                time.sleep(delay)
                delay = min(5.0, delay * 2)

    # -- readers --------------------------------------------------------------------------
    def fetch(self, config_key: str, name: ChunkName, into: Path) -> tuple[Path, str]:
        """A local file with the chunk's bytes and their sha256: the store's own file on a
        local store, a copy downloaded into the folder ``into`` on an object store."""
        local = self.local_path(config_key, name)
        if local is not None:
            try:
                return local, _sha256_of(local)
            except OSError as err:
                raise ChunkError(f"the chunk cannot be read: {err.strerror}",
                                 path=str(local)) from None
        target = into / name.filename
        h = hashlib.sha256()
        try:
            with self.storage.open_read(self.object_name(config_key, name)) as src, \
                    open(target, "wb") as out:
                for block in iter(lambda: src.read(COPY_BLOCK), b""):
                    h.update(block)
                    out.write(block)
        except StorageError as err:
            target.unlink(missing_ok=True)
            raise ChunkError(f"cannot download the chunk: {err.message}",
                             path=self.url(config_key, name), **_context(err)) from None
        return target, h.hexdigest()

    def sha256(self, config_key: str, name: ChunkName) -> str:
        """The sha256 of a sealed chunk's bytes, streamed (nothing is kept)."""
        local = self.local_path(config_key, name)
        if local is not None:
            try:
                return _sha256_of(local)
            except OSError as err:
                raise ChunkError(f"the chunk cannot be read: {err.strerror}",
                                 path=str(local)) from None
        h = hashlib.sha256()
        try:
            with self.storage.open_read(self.object_name(config_key, name)) as src:
                for block in iter(lambda: src.read(COPY_BLOCK), b""):
                    h.update(block)
        except StorageError as err:
            raise ChunkError(f"the chunk cannot be read: {err.message}",
                             path=self.url(config_key, name), **_context(err)) from None
        return h.hexdigest()

    def delete(self, config_key: str, name: ChunkName) -> None:
        try:
            self.storage.delete(self.object_name(config_key, name))
        except StorageError as err:
            raise ChunkError(f"cannot delete the chunk: {err.message}",
                             path=self.url(config_key, name), **_context(err)) from None

    # -- quarantine -----------------------------------------------------------------------
    def quarantine(self, config_key: str, name: ChunkName, copy: Path,
                   reason: str) -> Path | PurePosixPath:
        """Move a bad chunk aside with a reason object; it is never read into a dataset again.
        ``copy`` is a local file with its bytes (what `fetch` gave). Returns where it is now:
        the file on a local store, the store-relative name on an object store."""
        source = self.object_name(config_key, name)
        target = f"quarantine/{config_key}/{name.filename}"
        reason_doc = json.dumps({
            "chunk": name.filename, "config": config_key, "reason": reason,
            "quarantined_at": datetime.now(timezone.utc).isoformat()}, indent=2) + "\n"
        try:
            if self.root is not None:
                # a rename keeps today's single atomic step on a local store
                (self.root / target).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.root / source, self.root / target)
            else:
                self.storage.write(target, copy)
                self.storage.delete(source)
            self.storage.write(f"{target}.reason.json", reason_doc.encode())
        except (OSError, StorageError) as err:
            raise ChunkError(f"cannot quarantine the chunk: {err}",
                             path=self.url(config_key, name)) from None
        return self.root / target if self.root is not None else PurePosixPath(target)

    def quarantined(self) -> list[str]:
        """Object names of the quarantined chunks."""
        return [n for n in self._list("quarantine/") if n.endswith(".npz")]
