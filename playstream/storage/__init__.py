"""Storage: one port (:class:`Storage`) for chunk stores and datasets, on a local folder or on
S3-compatible object storage. ``open_storage`` turns what a user names a store with (a path or
an ``s3://bucket/prefix`` URL) into one.

Only :mod:`playstream.storage.s3` imports boto3 (the optional extra ``s3``); importing this
package does not.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playstream.errors import InvalidObjectNameError, ObjectNotFoundError, StorageError
from playstream.storage.local import LocalStorage
from playstream.storage.port import (Data, ObjectInfo, Storage, validate_name,
                                     validate_prefix)

if TYPE_CHECKING:
    from playstream.storage.s3 import S3Storage

__all__ = ["Data", "InvalidObjectNameError", "LocalStorage", "ObjectInfo", "ObjectNotFoundError",
           "S3Storage", "Storage", "StorageError", "download", "is_url", "open_object",
           "open_storage", "parse_s3_url", "validate_name", "validate_prefix"]

S3_EXTRA_HINT = "pip install 'playstream[s3]'"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError("an S3 store URL needs a bucket: s3://BUCKET[/PREFIX]", url=url,
                           operation="open")
    prefix = prefix.strip("/")
    if prefix:
        validate_name(prefix)
    return bucket, prefix


def _load_s3() -> Any:
    try:
        from playstream.storage import s3
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in ("boto3", "botocore"):
            raise StorageError(f"S3 stores need boto3, which is not installed: {S3_EXTRA_HINT}",
                               operation="open") from None
        raise
    return s3


def open_storage(location: str | os.PathLike[str], **options: Any) -> Storage:
    """A store for ``location``: ``s3://bucket/prefix`` gives an S3Storage (``options`` go to
    it: part_size, multipart_threshold, endpoint_url, ...), a path (or ``file://`` URL) a
    LocalStorage."""
    if isinstance(location, Storage) and not isinstance(location, (str, os.PathLike)):
        return location
    text = os.fspath(location)
    if text.startswith("s3://"):
        bucket, prefix = parse_s3_url(text)
        return _load_s3().S3Storage(bucket, prefix, **options)  # type: ignore[no-any-return]
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise StorageError("unsupported store URL: use a local path or s3://BUCKET[/PREFIX]",
                           url=text, operation="open")
    if options:
        raise TypeError(f"options {sorted(options)} apply to S3 stores only")
    if not text:
        raise StorageError("empty store location", operation="open")
    return LocalStorage(Path(text))


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for an ``s3://`` location (anything else names a local path)."""
    return os.fspath(location).startswith("s3://")


def open_object(url: str) -> tuple[Storage, str]:
    """The store holding the object ``s3://bucket/prefix/name`` and its name in it."""
    bucket, key = parse_s3_url(url)
    prefix, _, name = key.rpartition("/")
    if not name:
        raise StorageError("an object URL needs a bucket and a name: s3://BUCKET/NAME",
                           url=url, operation="open")
    return open_storage(f"s3://{bucket}/{prefix}".rstrip("/")), name


def download(url: str, folder: Path, *, block: int = 1 << 20) -> Path:
    """Copy the object at ``url`` into ``folder`` (same file name), streamed in blocks; for
    readers that need a local file (zip members are read by offset from a path)."""
    storage, name = open_object(url)
    target = folder / name
    with storage.open_read(name) as src, open(target, "wb") as out:
        for data in iter(lambda: src.read(block), b""):
            out.write(data)
    return target


def __getattr__(attr: str) -> Any:   # S3Storage on first use, so boto3 stays optional
    if attr == "S3Storage":
        return _load_s3().S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
