"""The storage port: the one interface for everything the chunk store, the finalizer, retention
and the dataset readers do with files, whether they live in a local folder or in a bucket.

Object names are store-relative POSIX names (``chunks/g1+0+9.npz``), never local absolute paths,
so a name written by one machine means the same object on every other machine. Every name is
checked by :func:`validate_name` before it reaches a file system or a server.

Guarantees every implementation gives:

* ``create_if_absent`` is the seal: it makes the object visible whole or not at all, and never
  replaces an existing object; exactly one of any number of concurrent callers gets ``True``.
* ``write`` replaces the object whole and atomically: a reader sees the old or the new bytes.
* Data given as a local path is streamed, never read into memory whole.
* Every failure is a :class:`playstream.errors.StorageError` naming the store, the object and
  the operation; a missing object is :class:`ObjectNotFoundError`, a bad name
  :class:`InvalidObjectNameError`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol, Union, runtime_checkable

from playstream.errors import InvalidObjectNameError, StorageError

# What a writer accepts: the bytes themselves, or a local file whose bytes are streamed.
# A str is deliberately not accepted: it would be ambiguous between content and a path.
Data = Union[bytes, bytearray, memoryview, "os.PathLike[str]"]

MAX_NAME_BYTES = 1024        # the S3 key limit
MAX_SEGMENT_BYTES = 255      # the usual file-name limit of local file systems
# Segments starting with this are the local store's temp files; no object may be named so.
RESERVED_PREFIX = ".playstream-tmp-"

_SEGMENT = re.compile(r"[A-Za-z0-9._+=-]+")
_PARTIAL_SEGMENT = re.compile(r"[A-Za-z0-9._+=-]*")


@dataclass(frozen=True)
class ObjectInfo:
    """One object as listed: its store-relative name, size in bytes, modification time
    (seconds since the epoch) and the server's entity tag where the store has one."""

    name: str
    size: int
    mtime: float
    etag: str | None = None


def _check_segment(segment: str, name: str, what: str, *, partial: bool = False) -> None:
    pattern = _PARTIAL_SEGMENT if partial else _SEGMENT
    if not pattern.fullmatch(segment):
        if segment == "":
            reason = "has an empty path segment (leading, trailing or doubled '/')"
        else:
            bad = sorted({c for c in segment if not _PARTIAL_SEGMENT.fullmatch(c)})
            reason = (f"has characters outside [A-Za-z0-9._+=-] in segment {segment!r}: "
                      f"{''.join(bad)!r}")
        raise InvalidObjectNameError(f"invalid {what}: {reason}", name=name)
    if segment in (".", ".."):
        raise InvalidObjectNameError(f"invalid {what}: '.' and '..' segments are not allowed",
                                     name=name)
    if segment.startswith(RESERVED_PREFIX):
        raise InvalidObjectNameError(f"invalid {what}: segments starting with "
                                     f"{RESERVED_PREFIX!r} are reserved for temp files", name=name)
    if len(segment.encode()) > MAX_SEGMENT_BYTES:
        raise InvalidObjectNameError(f"invalid {what}: a segment is longer than "
                                     f"{MAX_SEGMENT_BYTES} bytes", name=name)


def validate_name(name: object) -> str:
    """Return ``name`` if it is a safe store-relative object name, else raise
    :class:`InvalidObjectNameError` naming it. Safe: a non-empty str of '/'-separated
    segments from ``[A-Za-z0-9._+=-]``, none empty, none '.' or '..', not absolute."""
    if not isinstance(name, str):
        raise InvalidObjectNameError(f"object name must be a str, not {type(name).__name__}",
                                     name=repr(name))
    if name == "":
        raise InvalidObjectNameError("invalid object name: empty", name="''")
    if name.startswith("/"):
        raise InvalidObjectNameError("invalid object name: absolute (starts with '/'); "
                                     "names are relative to the store", name=name)
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidObjectNameError(f"invalid object name: longer than {MAX_NAME_BYTES} bytes",
                                     name=name[:80] + "...")
    for segment in name.split("/"):
        _check_segment(segment, name, "object name")
    return name


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a valid listing prefix: empty, or the start of a valid name
    (complete segments plus an optional partial last segment, e.g. ``chunks/g1+``)."""
    if not isinstance(prefix, str):
        raise InvalidObjectNameError(f"prefix must be a str, not {type(prefix).__name__}",
                                     name=repr(prefix))
    if prefix == "":
        return prefix
    if prefix.startswith("/"):
        raise InvalidObjectNameError("invalid prefix: absolute (starts with '/')", name=prefix)
    if len(prefix.encode()) > MAX_NAME_BYTES:
        raise InvalidObjectNameError(f"invalid prefix: longer than {MAX_NAME_BYTES} bytes",
                                     name=prefix[:80] + "...")
    *complete, last = prefix.split("/")
    for segment in complete:
        _check_segment(segment, prefix, "prefix")
    _check_segment(last, prefix, "prefix", partial=True)
    return prefix


def data_source(data: object, *, url: str, name: str, operation: str) -> bytes | memoryview | Path:
    """Normalise what a writer was given: bytes-like stay in memory, a path-like becomes a
    Path to stream from (it must be a regular file)."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data) if isinstance(data, bytearray) else data
    if isinstance(data, memoryview):
        return data.cast("B") if data.format != "B" or data.ndim != 1 else data
    if isinstance(data, os.PathLike):
        path = Path(os.fspath(data))
        if not path.is_file():
            raise StorageError(f"source file {path} does not exist or is not a regular file",
                               url=url, name=name, operation=operation)
        return path
    raise TypeError(f"data must be bytes-like or a path-like (os.PathLike), "
                    f"not {type(data).__name__}; a str is not accepted (content or path?)")


@runtime_checkable
class Storage(Protocol):
    """A flat namespace of immutable-or-replaced objects under one location."""

    @property
    def location(self) -> str:
        """What names this store: a local path or ``s3://bucket/prefix``; ``open_storage``
        accepts it back."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix`` (a plain string prefix, as in S3),
        sorted by name."""
        ...

    def read(self, name: str) -> bytes:
        """The whole object."""
        ...

    def read_range(self, name: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start``: fewer at the end of the object,
        ``b""`` at or past it."""
        ...

    def open_read(self, name: str) -> BinaryIO:
        """A seekable binary file object over the object (``np.load`` and ``zipfile`` work on
        it). It reads one version of the object: if the object is replaced while it is open,
        reads fail with a StorageError rather than mixing versions."""
        ...

    def create_if_absent(self, name: str, data: Data) -> bool:
        """Create the object with ``data`` unless it exists. True if this call created it,
        False if it already existed (its content is then left untouched). Atomic: never a
        partial object visible, never an overwrite; of concurrent callers exactly one wins."""
        ...

    def write(self, name: str, data: Data) -> None:
        """Create or replace the object whole, atomically."""
        ...

    def delete(self, name: str) -> None:
        """Delete the object; deleting an absent object is not an error."""
        ...

    def exists(self, name: str) -> bool:
        ...

    def stat(self, name: str) -> ObjectInfo:
        """Size, mtime and etag of one object (ObjectNotFoundError if absent)."""
        ...

    def url(self, name: str) -> str:
        """Where the object is, for messages and logs (not for announcements: those carry the
        store-relative name)."""
        ...
