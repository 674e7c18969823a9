"""Local copies of dataset files that live in an object store, for the loader.

Training reads every row of a shard every epoch, by range and in random order, which an
object store serves badly (one request per range) and a mapped local file serves well. So the
loader copies each ``s3://`` shard once into a cache folder and reads the copy. Entries are
named by the sha256 the manifest gives for the file, never by anything in the object's name:
the same bytes are fetched once whatever version lists them (a compaction that leaves a shard
unchanged costs no download), and a name in the cache cannot point outside it. A copy is
checked against the manifest's sha256 while it streams in and only then renamed into place, so
a reader never sees a partial or wrong file; one process per entry fetches (a lock file), the
other workers wait for it. Entries not used by the current snapshot are evicted, least recently
used first, beyond ``max_bytes``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path

from playstream.errors import DatasetError, LoaderError, StorageError
from playstream.locks import ProcessLock
from playstream.storage import open_object

log = logging.getLogger(__name__)

BLOCK = 1 << 20
LOCK_TIMEOUT_S = 3600.0  # another worker fetching a large shard over a slow link
_SHA256 = re.compile(r"[0-9a-f]{64}")
SUFFIX = ".npz"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/playstream/datasets`` (``~/.cache/...`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "playstream" / "datasets"


class DatasetCache:
    """A folder of verified local copies of object-store files, keyed by sha256."""

    def __init__(self, folder: str | os.PathLike[str] | None = None, *,
                 max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise LoaderError(f"cache_bytes must be >= 0, got {max_bytes}")
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.max_bytes = max_bytes

    def entry(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise DatasetError("a manifest sha256 is not 64 lowercase hex digits",
                               check="manifest", sha256=repr(sha256)[:80])
        return self.folder / f"{sha256}{SUFFIX}"

    def fetch(self, url: str, sha256: str) -> tuple[Path, bool]:
        """The local copy of ``url``, downloading it if it is not cached yet. Returns the
        path and whether this call downloaded it (a fresh copy was verified on the way in; an
        older one is for the caller to verify)."""
        target = self.entry(sha256)
        if target.is_file():
            os.utime(target)  # recently used: what eviction keeps
            return target, False
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = ProcessLock.acquire(self.folder / f"{sha256}.lock", timeout=LOCK_TIMEOUT_S)
        if lock is None:
            raise LoaderError("another process has been fetching this file for too long",
                              path=url, cache=str(target))
        with lock:
            if target.is_file():  # another worker fetched it while this one waited
                return target, False
            self._download(url, sha256, target)
        return target, True

    def _download(self, url: str, sha256: str, target: Path) -> None:
        storage, name = open_object(url)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        started = time.monotonic()
        size = 0
        try:
            with storage.open_read(name) as src, open(partial, "wb") as out:
                for block in iter(lambda: src.read(BLOCK), b""):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise DatasetError("sha256 of the downloaded file does not match its manifest "
                                   "entry", path=url, check="checksums")
            os.replace(partial, target)
        except StorageError as err:
            raise DatasetError(f"cannot download a dataset file: {err.message}", path=url,
                               check="download") from None
        finally:
            partial.unlink(missing_ok=True)
        log.info("dataset file cached", extra={
            "path": url, "cache": str(target), "bytes": size,
            "seconds": round(time.monotonic() - started, 3)})

    def evict(self, sha256: str) -> None:
        self.entry(sha256).unlink(missing_ok=True)

    def prune(self, keep: set[str]) -> list[Path]:
        """Delete the least recently used entries outside ``keep`` (sha256s) until the cache
        holds at most ``max_bytes``; returns what was deleted."""
        if self.max_bytes is None or not self.folder.is_dir():
            return []
        entries = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            if _SHA256.fullmatch(path.name[:-len(SUFFIX)]):
                stat = path.stat()
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        deleted = []
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path.name[:-len(SUFFIX)] in keep:
                continue
            path.unlink(missing_ok=True)
            path.with_suffix(".lock").unlink(missing_ok=True)
            total -= size
            deleted.append(path)
        if deleted:
            log.info("dataset cache pruned", extra={"cache": str(self.folder),
                                                    "deleted": len(deleted), "bytes": total})
        return deleted
