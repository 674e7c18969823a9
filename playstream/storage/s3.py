"""The storage port on S3-compatible object storage (AWS S3, S3Proxy, MinIO, ...) via boto3.

The only module of playstream that imports boto3 (the optional extra ``s3``:
``pip install 'playstream[s3]'``). Endpoint, credentials and region come from the standard
``AWS_*`` environment variables and files, as boto3 reads them (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``, ...).

* ``create_if_absent`` is a conditional write, ``If-None-Match: *``, on PutObject and, for
  large objects, on CompleteMultipartUpload: the server refuses (412) when the key exists, so
  the check and the write are one atomic step on the server. A multipart upload that loses is
  aborted. S3 makes an object visible only when its PutObject or CompleteMultipartUpload
  finishes, so no reader ever sees a partial object. ``verify_conditional_writes`` checks that a
  server honours the header (one that ignored it would silently overwrite).
* ``write`` is an unconditional PutObject / multipart upload: a whole, atomic replace.
* Objects above ``multipart_threshold`` are uploaded in parts of ``part_size`` bytes, streamed
  from the local file one part at a time; a failed upload is aborted.
* Requests are retried by botocore ("standard" mode, ``max_attempts`` in all); reads that break
  off mid-body are retried here, pinned to the object's ETag with ``If-Match`` so a retried or
  ranged read never mixes two versions of an object.
* Every failure is a StorageError naming the store URL, the object, the operation and the
  endpoint; refused credentials say so.
"""
from __future__ import annotations

import binascii
import builtins
import hashlib
import io
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError,
                                 EndpointConnectionError, NoCredentialsError, ReadTimeoutError)

from playstream.errors import ObjectNotFoundError, StorageError
from playstream.storage.port import Data, ObjectInfo, data_source, validate_name, validate_prefix

try:   # botocore >= 1.31.x wraps broken bodies in ResponseStreamingError
    from botocore.exceptions import ResponseStreamingError
except ImportError:  # pragma: no cover
    ResponseStreamingError = ReadTimeoutError  # type: ignore[misc]
from botocore.exceptions import IncompleteReadError

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB          # S3's minimum for every part but the last
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB
DEFAULT_MULTIPART_THRESHOLD = 16 * MiB
DEFAULT_READ_AHEAD = 1 * MiB

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# botocore error codes that mean the server does not accept who we say we are
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                     "ExpiredToken", "TokenRefreshRequired", "InvalidSecurity",
                     "AuthorizationHeaderMalformed"}
_BODY_ERRORS: tuple[type[BaseException], ...] = (ResponseStreamingError, IncompleteReadError,
                                                 ReadTimeoutError, ConnectionClosedError)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _is_precondition_failed(err: ClientError) -> bool:
    return _code(err) == "PreconditionFailed" or _status(err) == 412


def _is_not_found(err: ClientError) -> bool:
    return _code(err) in ("NoSuchKey", "404", "NotFound") or (
        _status(err) == 404 and _code(err) not in ("NoSuchBucket", "NoSuchUpload"))


def _multipart_etag(part_etags: list[str]) -> str:
    """The ETag S3 gives a completed multipart upload: md5 of the parts' binary md5s, '-N'."""
    digest = hashlib.md5(b"".join(binascii.unhexlify(e.strip('"')) for e in part_etags))
    return f'"{digest.hexdigest()}-{len(part_etags)}"'


class S3Storage:
    """Objects under ``s3://bucket/prefix``; an object name is the key relative to ``prefix``."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 part_size: int = DEFAULT_PART_SIZE,
                 multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
                 read_ahead: int = DEFAULT_READ_AHEAD, max_attempts: int = 5,
                 connect_timeout: float = 10, read_timeout: float = 60,
                 client: Any = None) -> None:
        if not _BUCKET.fullmatch(bucket or ""):
            raise StorageError("invalid bucket name (3-63 of a-z 0-9 . -)", url=f"s3://{bucket}",
                               operation="open")
        prefix = prefix.strip("/")
        if prefix:
            validate_name(prefix)
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if multipart_threshold < 1 or read_ahead < 1 or max_attempts < 1:
            raise ValueError("multipart_threshold, read_ahead and max_attempts must be positive")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.part_size = part_size
        self.multipart_threshold = multipart_threshold
        self.read_ahead = read_ahead
        self.max_attempts = max_attempts
        if client is None:
            config = Config(retries={"max_attempts": max_attempts, "mode": "standard"},
                            connect_timeout=connect_timeout, read_timeout=read_timeout)
            # a session per store: boto3's default session is not thread-safe, clients are
            client = boto3.session.Session().client("s3", endpoint_url=endpoint_url,
                                                    config=config)
        self._client = client

    def __repr__(self) -> str:
        return f"S3Storage({self.location!r}, endpoint={self.endpoint!r})"

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def endpoint(self) -> str:
        return str(self._client.meta.endpoint_url)

    def url(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{validate_name(name)}"

    def _key(self, name: str) -> str:
        return self.prefix + validate_name(name)

    # ------------------------------------------------------------------ errors
    def _fail(self, err: BaseException, name: str | None, operation: str) -> StorageError:
        # not self.url(): name may be a listing prefix, which is no valid object name
        url = f"s3://{self.bucket}/{self.prefix}{name}" if name else self.location
        ctx: dict[str, Any] = {"url": url, "name": name, "operation": operation,
                               "endpoint": self.endpoint}
        if isinstance(err, ClientError):
            code, status = _code(err), _status(err)
            ctx["code"] = code or None
            ctx["status"] = status or None
            if _is_not_found(err):
                return ObjectNotFoundError("no such object", **ctx)
            if code == "NoSuchBucket":
                return StorageError(f"bucket {self.bucket!r} does not exist at {self.endpoint}",
                                    **ctx)
            if code in _CREDENTIAL_CODES:
                return StorageError(f"the server at {self.endpoint} refused the credentials "
                                    f"({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
                                    **ctx)
            if code in ("AccessDenied", "403") or status == 403:
                return StorageError(f"the server at {self.endpoint} refused the request (403): "
                                    "the credentials were refused or lack permission for "
                                    f"{url}", **ctx)
            message = err.response.get("Error", {}).get("Message") or str(err)
            return StorageError(f"the server at {self.endpoint} answered {status} {code}: "
                                f"{message}", **ctx)
        if isinstance(err, NoCredentialsError):
            return StorageError("no credentials found: set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)", **ctx)
        if isinstance(err, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)):
            return StorageError(f"cannot reach {self.endpoint} after {self.max_attempts} "
                                f"attempts: {err}", **ctx)
        return StorageError(f"{type(err).__name__} talking to {self.endpoint}: {err}", **ctx)

    # ------------------------------------------------------------------ reads
    def _head(self, name: str, operation: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._client.head_object(Bucket=self.bucket,
                                                            Key=self._key(name))
            return head
        except ClientError as err:
            if _is_not_found(err):
                return None
            raise self._fail(err, name, operation) from None
        except BotoCoreError as err:
            raise self._fail(err, name, operation) from None

    def exists(self, name: str) -> bool:
        return self._head(name, "exists") is not None

    def stat(self, name: str) -> ObjectInfo:
        head = self._head(name, "stat")
        if head is None:
            raise ObjectNotFoundError("no such object", url=self.url(name), name=name,
                                      operation="stat", endpoint=self.endpoint)
        return ObjectInfo(name=name, size=int(head["ContentLength"]),
                          mtime=head["LastModified"].timestamp(), etag=head.get("ETag"))

    def _get(self, name: str, operation: str, *, start: int | None = None,
             end: int | None = None, if_match: str | None = None) -> bytes:
        """GET the object or the inclusive byte range [start, end]; retries a body that
        breaks off. With ``if_match`` the server refuses (412) if the object was replaced."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(name)}
        if start is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        if if_match:
            kwargs["IfMatch"] = if_match
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = self._client.get_object(**kwargs)
                body: bytes = resp["Body"].read()
                return body
            except ClientError as err:
                if _code(err) == "InvalidRange" or _status(err) == 416:
                    return b""
                if if_match and _is_precondition_failed(err):
                    raise StorageError("the object was replaced while it was being read",
                                       url=self.url(name), name=name, operation=operation,
                                       endpoint=self.endpoint) from None
                raise self._fail(err, name, operation) from None
            except _BODY_ERRORS as err:
                if attempt == self.max_attempts:
                    raise self._fail(err, name, operation) from None
                time.sleep(min(2.0, 0.1 * 2 ** attempt))
            except BotoCoreError as err:
                raise self._fail(err, name, operation) from None
        raise AssertionError("unreachable")

    def read(self, name: str) -> bytes:
        return self._get(name, "read")

    def read_range(self, name: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise StorageError(f"invalid range start={start} length={length}",
                               url=self.url(name), name=name, operation="read_range")
        if length == 0:
            if not self.exists(name):
                raise ObjectNotFoundError("no such object", url=self.url(name), name=name,
                                          operation="read_range", endpoint=self.endpoint)
            return b""
        return self._get(name, "read_range", start=start, end=start + length - 1)

    def open_read(self, name: str) -> BinaryIO:
        head = self._head(name, "open_read")
        if head is None:
            raise ObjectNotFoundError("no such object", url=self.url(name), name=name,
                                      operation="open_read", endpoint=self.endpoint)
        raw = _RangedReader(self, name, int(head["ContentLength"]), head.get("ETag"))
        return io.BufferedReader(raw, buffer_size=self.read_ahead)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(self.prefix):]
                    try:
                        validate_name(name)
                    except StorageError:
                        continue   # a key this store did not write (folder marker, foreign name)
                    yield ObjectInfo(name=name, size=int(obj["Size"]),
                                     mtime=obj["LastModified"].timestamp(), etag=obj.get("ETag"))
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err, prefix or None, "list") from None

    # ------------------------------------------------------------------ writes
    def create_if_absent(self, name: str, data: Data) -> bool:
        return self._upload(name, data, "create_if_absent", conditional=True)

    def write(self, name: str, data: Data) -> None:
        self._upload(name, data, "write", conditional=False)

    def delete(self, name: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as err:
            if _is_not_found(err):
                return
            raise self._fail(err, name, "delete") from None
        except BotoCoreError as err:
            raise self._fail(err, name, "delete") from None

    def _upload(self, name: str, data: Data, operation: str, *, conditional: bool) -> bool:
        key = self._key(name)
        src = data_source(data, url=self.url(name), name=name, operation=operation)
        size = src.stat().st_size if isinstance(src, Path) else len(src)
        if size > self.multipart_threshold:
            if conditional and self.exists(name):
                return False   # saves the upload; the conditional complete stays the authority
            return self._multipart(name, key, src, size, operation, conditional)
        extra = {"IfNoneMatch": "*"} if conditional else {}
        for attempt in range(1, self.max_attempts + 1):
            try:
                if isinstance(src, Path):
                    with open(src, "rb") as body:
                        self._client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
                else:
                    self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(src),
                                            **extra)
                return True
            except ClientError as err:
                if conditional and _is_precondition_failed(err):
                    return False
                # AWS: a concurrent conditional write on the same key; retrying settles it
                if _code(err) == "ConditionalRequestConflict" and attempt < self.max_attempts:
                    time.sleep(0.05 * attempt)
                    continue
                raise self._fail(err, name, operation) from None
            except BotoCoreError as err:
                raise self._fail(err, name, operation) from None
        raise AssertionError("unreachable")

    def _parts(self, src: bytes | memoryview | Path, size: int) -> Iterator[bytes]:
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        if isinstance(src, Path):
            with open(src, "rb") as f:
                while True:
                    chunk = f.read(part_size)
                    if not chunk:
                        return
                    yield chunk
        else:
            view = memoryview(src)
            for offset in range(0, size, part_size):
                yield bytes(view[offset:offset + part_size])

    def _multipart(self, name: str, key: str, src: bytes | memoryview | Path, size: int,
                   operation: str, conditional: bool) -> bool:
        try:
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket,
                                                             Key=key)["UploadId"]
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err, name, operation) from None
        etags: builtins.list[str] = []
        completed = False
        try:
            for number, chunk in enumerate(self._parts(src, size), start=1):
                resp = self._client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                PartNumber=number, Body=chunk)
                etags.append(resp["ETag"])
            parts = [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]
            extra = {"IfNoneMatch": "*"} if conditional else {}
            try:
                self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts}, **extra)
            except ClientError as err:
                if conditional and _is_precondition_failed(err):
                    return False
                if _code(err) == "NoSuchUpload" and self._completed_by_us(name, etags):
                    # a retried complete whose first attempt went through: the upload id is
                    # ours alone and the object carries exactly our parts
                    completed = True
                    return True
                raise
            completed = True
            return True
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err, name, operation) from None
        finally:
            if not completed:
                self._abort(key, upload_id)

    def _completed_by_us(self, name: str, etags: builtins.list[str]) -> bool:
        head = self._head(name, "create_if_absent")
        return head is not None and head.get("ETag") == _multipart_etag(etags)

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass   # best effort: a bucket lifecycle rule reaps what is left

    # ------------------------------------------------------------------ checks
    def verify_conditional_writes(self) -> None:
        """Raise StorageError unless the server refuses a second ``If-None-Match: *`` put of the
        same key (one that ignores the header would make every seal an overwrite)."""
        name = f"_playstream/conditional-write-probe-{uuid.uuid4().hex}"
        try:
            first = self.create_if_absent(name, b"first")
            second = self.create_if_absent(name, b"second")
            content = self.read(name)
        finally:
            self.delete(name)
        if not (first and not second and content == b"first"):
            raise StorageError(f"the server at {self.endpoint} does not honour conditional "
                               "writes (If-None-Match: *): create_if_absent would overwrite",
                               url=self.url(name), name=name, operation="verify_conditional_writes")


class _RangedReader(io.RawIOBase):
    """A seekable raw file over one version (ETag) of an object, read with ranged GETs; wrapped
    in an io.BufferedReader, whose buffer is the read-ahead."""

    def __init__(self, storage: S3Storage, name: str, size: int, etag: str | None) -> None:
        super().__init__()
        self._storage = storage
        self._object = name
        self._size = size
        self._etag = etag
        self._pos = 0
        self.name = storage.url(name)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or len(view) == 0:
            return 0
        n = min(len(view), self._size - self._pos)
        data = self._storage._get(self._object, "open_read", start=self._pos,
                                  end=self._pos + n - 1, if_match=self._etag)
        if len(data) != n:
            raise StorageError(f"short ranged read: asked {n} bytes at {self._pos}, "
                               f"got {len(data)}", url=self.name, name=self._object,
                               operation="open_read")
        view[:n] = data
        self._pos += n
        return n

    def readall(self) -> bytes:
        if self._pos >= self._size:
            return b""
        data = self._storage._get(self._object, "open_read", start=self._pos,
                                  end=self._size - 1, if_match=self._etag)
        self._pos += len(data)
        return data
