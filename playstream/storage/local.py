"""The storage port on a local (or network) POSIX file system: today's guarantees.

* ``create_if_absent``: the bytes go to a temp file in the target folder, are fsynced, then
  ``os.link`` gives them the final name, which fails if the name exists; the folder is fsynced.
  A crash leaves either no object or the whole object, never a partial one under the name.
* ``write``: temp file + fsync + ``os.replace`` + folder fsync.
* Folders are created on demand (each new one made durable in its parent) and never removed,
  so a concurrent create in the same folder cannot lose its folder to a delete.
"""
from __future__ import annotations

import builtins
import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator

from playstream.durable import fsync_dir
from playstream.errors import ObjectNotFoundError, StorageError
from playstream.storage.port import (RESERVED_PREFIX, Data, ObjectInfo, data_source,
                                     validate_name, validate_prefix)

COPY_BUFFER = 1 << 20


class LocalStorage:
    """Objects as files under ``root``; an object name is the path relative to ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    @property
    def location(self) -> str:
        return str(self.root)

    def url(self, name: str) -> str:
        return str(self.root / validate_name(name))

    # ------------------------------------------------------------------ helpers
    def _path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def _error(self, message: str, name: str | None, operation: str,
               err: OSError | None = None) -> StorageError:
        extra = {"errno": errno.errorcode.get(err.errno, err.errno)} if err and err.errno else {}
        cls = ObjectNotFoundError if isinstance(err, FileNotFoundError) else StorageError
        return cls(message, url=str(self.root / name) if name else str(self.root), name=name,
                   operation=operation, **extra)

    def _ensure_dir(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents, each made durable in its parent."""
        missing = []
        p = folder
        while not p.is_dir():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue
            fsync_dir(d.parent)

    def _write_temp(self, path: Path, data: Data, name: str, operation: str) -> Path:
        """Write ``data`` to a fsynced temp file next to ``path`` and return the temp path."""
        src = data_source(data, url=str(path), name=name, operation=operation)
        self._ensure_dir(path.parent)
        tmp = path.parent / f"{RESERVED_PREFIX}{uuid.uuid4().hex}"
        try:
            with open(tmp, "xb") as out:
                if isinstance(src, Path):
                    with open(src, "rb") as inp:
                        shutil.copyfileobj(inp, out, COPY_BUFFER)
                else:
                    out.write(src)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    # ------------------------------------------------------------------ writes
    def create_if_absent(self, name: str, data: Data) -> bool:
        path = self._path(name)
        if path.is_dir():
            raise StorageError("a folder of that name exists (other objects are named below "
                               "it); a local store cannot hold an object there", url=str(path),
                               name=name, operation="create_if_absent")
        if path.exists():     # cheap early answer; os.link below is the authority
            return False
        try:
            tmp = self._write_temp(path, data, name, "create_if_absent")
        except OSError as err:
            raise self._error(f"cannot write a temp file: {err.strerror}", name,
                              "create_if_absent", err) from err
        try:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as err:
                raise self._error(f"cannot link the object into place: {err.strerror}", name,
                                  "create_if_absent", err) from err
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return True

    def write(self, name: str, data: Data) -> None:
        path = self._path(name)
        try:
            tmp = self._write_temp(path, data, name, "write")
            try:
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsync_dir(path.parent)
        except OSError as err:
            raise self._error(f"cannot write: {err.strerror}", name, "write", err) from err

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as err:
            raise self._error(f"cannot delete: {err.strerror}", name, "delete", err) from err
        fsync_dir(path.parent)

    # ------------------------------------------------------------------ reads
    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def stat(self, name: str) -> ObjectInfo:
        path = self._path(name)
        try:
            st = path.stat()
        except OSError as err:
            raise self._error("no such object" if isinstance(err, FileNotFoundError)
                              else f"cannot stat: {err.strerror}", name, "stat", err) from None
        if not path.is_file():
            raise ObjectNotFoundError("not an object (a folder)", url=str(path), name=name,
                                      operation="stat")
        return ObjectInfo(name=name, size=st.st_size, mtime=st.st_mtime)

    def read(self, name: str) -> bytes:
        path = self._path(name)
        try:
            return path.read_bytes()
        except OSError as err:
            raise self._error("no such object" if isinstance(err, FileNotFoundError)
                              else f"cannot read: {err.strerror}", name, "read", err) from None

    def read_range(self, name: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise StorageError(f"invalid range start={start} length={length}",
                               url=self.url(name), name=name, operation="read_range")
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(length)
        except OSError as err:
            raise self._error("no such object" if isinstance(err, FileNotFoundError)
                              else f"cannot read: {err.strerror}", name, "read_range",
                              err) from None

    def open_read(self, name: str) -> BinaryIO:
        path = self._path(name)
        try:
            return open(path, "rb")
        except OSError as err:
            raise self._error("no such object" if isinstance(err, FileNotFoundError)
                              else f"cannot open: {err.strerror}", name, "open_read",
                              err) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # a root that does not exist yet is an empty store, as an unused S3 prefix is
        folder, _, _ = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        if not start.is_dir():
            return
        found: builtins.list[ObjectInfo] = []
        self._walk(start, folder, prefix, found)
        found.sort(key=lambda o: o.name)
        yield from found

    def _walk(self, folder: Path, rel: str, prefix: str,
              found: builtins.list[ObjectInfo]) -> None:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(RESERVED_PREFIX):
                continue
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                # descend only where names below can still start with prefix
                if prefix.startswith(name + "/") or (name + "/").startswith(prefix):
                    self._walk(Path(entry.path), name, prefix, found)
            elif entry.is_file(follow_symlinks=False) and name.startswith(prefix):
                try:
                    validate_name(name)
                    st = entry.stat(follow_symlinks=False)
                except (StorageError, FileNotFoundError):
                    continue   # a foreign file name, or deleted while listing
                found.append(ObjectInfo(name=name, size=st.st_size, mtime=st.st_mtime))
