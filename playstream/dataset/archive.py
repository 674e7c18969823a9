"""Reading a dataset zip member by member, in bounded blocks, without ever unpickling.

np.load reads a whole member at once; a validator of big files and a streaming reader need the
.npy header alone, and then the data in blocks. Stored members are read straight from the file
at their data offset (so they can also be memory-mapped, and a damaged byte is reported by the
array checksum, which names what changed, before the zip CRC-32); deflated members are
stream-decompressed, zipfile checking their CRC. Every low-level failure becomes a DatasetError
with check "zip", "npy_headers" or "readable".
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from playstream.dataset.schema import (FORMAT_NAME, MAX_MEMBERS, MAX_METADATA_BYTES, METADATA,
                                       READABLE_VERSIONS, checksum_hasher)
from playstream.errors import DatasetError

BLOCK_BYTES = 8 << 20
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError)
# What numpy's header parser raises on garbage besides ValueError (it falls back to tokenize).
_HEADER_ERRORS = _READ_ERRORS + (SyntaxError, TypeError, KeyError, tokenize.TokenError)


@dataclass(frozen=True)
class Member:
    """One .npy member: its zip entry and the array its header describes."""

    name: str
    info: zipfile.ZipInfo
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    header_bytes: int  # size of the .npy header inside the member
    data_offset: int | None  # absolute offset of the array data in the file, stored members

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def item_bytes(self) -> int:
        """Bytes of one entry along the first axis."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize


_Header = tuple[tuple[int, ...], bool, np.dtype, int]  # shape, Fortran order, dtype, bytes
_MAGIC_1_0 = b"\x93NUMPY\x01\x00"
# The header dict exactly as numpy's writer (and ours) lays it out, for a plain dtype.
_CANONICAL = re.compile(rb"\{'descr': '([<>|=][a-zA-Z][0-9]{1,5})', 'fortran_order': "
                        rb"(False|True), 'shape': \(((?:[0-9]{1,19}, )*[0-9]{1,19},?)?\), \} *\n")


def _canonical_header(fp: IO[bytes]) -> _Header | None:
    """The header of a version 1.0 member laid out as numpy writes it, or None for any other
    (then numpy's parser decides). numpy parses every header as a Python literal, about
    0.1 ms each; a compaction reads the 14 headers of each chunk several times."""
    head = fp.read(len(_MAGIC_1_0) + 2)
    if len(head) != len(_MAGIC_1_0) + 2 or not head.startswith(_MAGIC_1_0):
        return None
    (length,) = struct.unpack("<H", head[len(_MAGIC_1_0):])
    match = _CANONICAL.fullmatch(fp.read(length))
    if match is None:
        return None
    descr, fortran, dims = match.groups()
    shape = tuple(int(d) for d in dims.split(b",") if d.strip()) if dims else ()
    return shape, fortran == b"True", np.dtype(descr.decode()), len(head) + length


def _numpy_header(fp: IO[bytes]) -> _Header:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f".npy version {version} is not 1.0 or 2.0")
    return tuple(shape), fortran, dtype, fp.tell()


class Archive:
    """An open dataset zip: members by array name, headers parsed, data not yet read."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self.raw: IO[bytes] = open(path, "rb")
        except OSError as exc:
            raise DatasetError(f"cannot open: {exc.strerror}", path=self.path,
                               check="zip") from None
        try:
            self.zip = zipfile.ZipFile(self.raw)
            infos = self.zip.infolist()
        except _READ_ERRORS as exc:
            self.raw.close()
            raise DatasetError(f"does not open as a zip archive (truncated, or not an NPZ "
                               f"file): {exc}", path=self.path, check="zip") from None
        self.infos = self._check_entries(infos)

    def _check_entries(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        def fail(message: str, array: str | None = None) -> DatasetError:
            self.close()
            return DatasetError(message, path=self.path, array=array, check="zip")

        if len(infos) > MAX_MEMBERS:
            raise fail(f"holds {len(infos)} members, more than the {MAX_MEMBERS} the format "
                       f"allows")
        size = os.fstat(self.raw.fileno()).st_size
        out: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy") or "/" in name or name in out:
                raise fail(f"member {info.filename!r} is not a distinct top-level .npy file")
            if info.flag_bits & 0x1:
                raise fail("member is encrypted", name)
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise fail(f"member uses compression method {info.compress_type}; the "
                           f"format allows stored or deflated", name)
            if info.header_offset + info.compress_size > size:
                raise fail(f"member runs past the end of the file ({size} bytes): truncated",
                           name)
            out[name] = info
        return out

    def close(self) -> None:
        self.zip.close()
        self.raw.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_header(self, name: str) -> Member:
        """Parse one member's .npy header (a Python literal: never unpickled)."""
        info = self.infos[name]
        try:
            with self.zip.open(info) as fp:
                parsed = _canonical_header(fp)
            if parsed is None:
                with self.zip.open(info) as fp:
                    parsed = _numpy_header(fp)
        except _HEADER_ERRORS as exc:
            raise DatasetError(f"bad .npy header: {exc}", path=self.path, array=name,
                               check="npy_headers") from None
        shape, fortran, dtype, header_bytes = parsed
        offset = None
        if info.compress_type == zipfile.ZIP_STORED:
            offset = self._data_start(info) + header_bytes
        return Member(name, info, dtype, tuple(shape), fortran, header_bytes, offset)

    def _data_start(self, info: zipfile.ZipInfo) -> int:
        """Offset of a member's first byte: after its local header, whose name and extra
        field lengths may differ from the central directory's."""
        self.raw.seek(info.header_offset)
        local = self.raw.read(zipfile.sizeFileHeader)
        if len(local) != zipfile.sizeFileHeader or local[:4] != b"PK\x03\x04":
            raise DatasetError("bad local zip header", path=self.path,
                               array=info.filename.removesuffix(".npy"), check="npy_headers")
        fields = struct.unpack(zipfile.structFileHeader, local)
        return info.header_offset + zipfile.sizeFileHeader + fields[10] + fields[11]

    def read_metadata(self, member: Member) -> dict[str, Any]:
        """The metadata JSON object. Size and type are checked before anything is read."""
        def fail(message: str) -> DatasetError:
            return DatasetError(message, path=self.path, array=METADATA, check="metadata")

        if member.dtype.kind != "U" or member.shape != ():
            raise fail(f"must be a 0-d unicode array, got {member.dtype.str} {member.shape}")
        if member.nbytes > MAX_METADATA_BYTES:
            raise fail(f"is {member.nbytes} bytes, more than {MAX_METADATA_BYTES}")
        stream = MemberStream(self, member, verify=True)
        text = str(stream.read_all()[()])
        if not stream.crc_matches():
            raise fail("is damaged: its zip CRC-32 does not match")
        try:
            metadata = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise fail(f"is not valid JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise fail(f"JSON is a {type(metadata).__name__}, not an object")
        version = metadata.get("format_version")
        if metadata.get("format") != FORMAT_NAME or isinstance(version, bool) \
                or version not in READABLE_VERSIONS:
            raise fail(f"format is {metadata.get('format')!r} version {version!r}, expected "
                       f"{FORMAT_NAME!r} version "
                       f"{' or '.join(map(str, READABLE_VERSIONS))}")
        return metadata

    def memmap(self, member: Member) -> np.ndarray:
        """A read-only view of a stored member's array, mapped from the file."""
        if member.data_offset is None:
            raise DatasetError("cannot be memory-mapped: the member is compressed (written "
                               "with compress=True)", path=self.path, array=member.name,
                               check="mmap")
        if member.nbytes == 0:
            return np.empty(member.shape, member.dtype)
        return np.memmap(self.path, dtype=member.dtype, mode="r", offset=member.data_offset,
                         shape=member.shape)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in metadata")


class MemberStream:
    """Sequential reader of one member's data along its first axis. With ``verify`` it feeds
    every byte it reads to the format checksum and, for stored members, to the zip CRC-32
    (which zipfile checks itself for deflated ones); both are complete once it is drained."""

    def __init__(self, archive: Archive, member: Member, *, verify: bool) -> None:
        self.archive = archive
        self.member = member
        self.hasher = checksum_hasher(member.dtype, member.shape) if verify else None
        self._crc: int | None = None
        self._left = member.nbytes
        self._pos = member.data_offset
        self._fp: IO[bytes] | None = None
        if verify and self._pos is not None:  # the CRC also covers the .npy header
            self._crc = zlib.crc32(self._raw_bytes(self._pos - member.header_bytes,
                                                   member.header_bytes))

    def read(self, count: int) -> np.ndarray:
        """The next ``count`` entries along the first axis (a writable array)."""
        shape = (count,) + self.member.shape[1:]
        return self._read_into(count * self.member.item_bytes).view(self.member.dtype).reshape(
            shape)

    def read_all(self) -> np.ndarray:
        """What is left of the member, in its stored shape (also 0-d arrays)."""
        data = self._read_into(self._left)
        return data.view(self.member.dtype).reshape(self.member.shape)

    def drain(self) -> None:
        """Read the rest in blocks, only for the checksum."""
        while self._left:
            self._read_into(min(self._left, BLOCK_BYTES))

    def hexdigest(self) -> str:
        assert self.hasher is not None and self._left == 0, "checksum of a partly read member"
        return self.hasher.hexdigest()

    def crc_matches(self) -> bool:
        assert self._left == 0, "CRC of a partly read member"
        return self._crc is None or self._crc == self.member.info.CRC

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()

    def _read_into(self, nbytes: int) -> np.ndarray:
        name = self.member.name
        if nbytes > self._left:
            raise DatasetError(f"asked for {nbytes} bytes, {self._left} left in the member",
                               path=self.archive.path, array=name, check="readable")
        buf = np.empty(nbytes, np.uint8)
        view = memoryview(buf)
        try:
            fp = self._source()
            got = 0
            while got < nbytes:
                n = fp.readinto(view[got:])
                if not n:
                    raise EOFError(f"member ends {nbytes - got} bytes early")
                got += n
            if self._pos is not None:
                self._pos += nbytes
            self._left -= nbytes
            # Reading past the end makes zipfile check a deflated member's CRC-32.
            if self._left == 0 and self._fp is not None and fp.read(1):
                raise ValueError("member holds more data than its header says")
        except _READ_ERRORS as exc:
            raise DatasetError(f"cannot read data: {exc}", path=self.archive.path, array=name,
                               check="readable") from None
        if self.hasher is not None:
            self.hasher.update(view)
        if self._crc is not None:
            self._crc = zlib.crc32(view, self._crc)
        return buf

    def _raw_bytes(self, offset: int, nbytes: int) -> bytes:
        try:
            self.archive.raw.seek(offset)
            data = self.archive.raw.read(nbytes)
        except OSError as exc:
            data, reason = b"", str(exc)
        else:
            reason = f"file ends {nbytes - len(data)} bytes early"
        if len(data) != nbytes:
            raise DatasetError(f"cannot read the .npy header: {reason}", path=self.archive.path,
                               array=self.member.name, check="readable")
        return data

    def _source(self) -> IO[bytes]:
        if self._pos is not None:  # stored: read the file itself, shared with other streams
            self.archive.raw.seek(self._pos)
            return self.archive.raw
        if self._fp is None:
            self._fp = self.archive.zip.open(self.member.info)
            self._fp.read(self.member.header_bytes)
        return self._fp
