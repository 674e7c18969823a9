"""NPZDatasetWriter: stream rows into a dataset file in bounded memory, publish it atomically.

N is unknown until the last write, and an .npy header states N, so each array is first spooled
raw into its own file; ``close`` then writes every zip member (header, then the spool copied in
blocks, hashed on the way), adds the metadata, fsyncs and renames into place. Memory holds one
batch plus one block whatever the number of rows (and 8 bytes per distinct game id). Nothing
appears at ``path`` unless ``close`` completes; an existing file there stays untouched until
the rename replaces it whole.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Iterator, Mapping

import numpy as np

from playstream.dataset.archive import BLOCK_BYTES
from playstream.dataset.batch import RowBatch
from playstream.dataset.checks import content_problems, planes_problem, row_shape
from playstream.dataset.config import DatasetConfig
from playstream.dataset.packing import (ChannelObserver, FeatureStorage, PackedRows, Planes,
                                        packed_width)
from playstream.dataset.schema import (DENSE_FORMAT_VERSION, DENSE_FORMAT_VERSIONS,
                                       DENSE_POLICY, FEATURE_BITS, FEATURE_CONSTANT,
                                       FEATURE_FLOATS, FIXED_DTYPES, FORMAT_NAME,
                                       FORMAT_VERSION, MAX_METADATA_BYTES, METADATA,
                                       PACKED_FEATURES, PER_ROW_ARRAYS, WRITABLE_VERSIONS, checksum_hasher,
                                       file_arrays, game_id_dtype)
from playstream.durable import fsync_dir
from playstream.errors import DatasetError

# A fixed member time keeps the bytes a function of the rows and the metadata only.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FIXED_ROW_ARRAYS = tuple(n for n in PER_ROW_ARRAYS if n not in ("game_id", "features"))
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


class NPZDatasetWriter:
    """Context manager: ``write`` batches, then leave the block (or call ``close``) to publish.
    An exception inside the block (or ``abort``) removes every temporary file.

    With ``planes`` (format 3 only) the planes are stored that way whatever is written, and
    the spool holds them packed: the writer for rows that already are (`PackedRows`, as
    compaction moves them), which would otherwise be unpacked and packed again. Without, it
    decides at close from what was written.

    ``durable=False`` skips the fsyncs, for a scratch file that is only a step towards a
    durable copy (a chunk: the store fsyncs its own copy, and its folder, before the chunk
    counts as sealed); the rename into place stays atomic either way."""

    def __init__(self, path: str | os.PathLike[str], config: DatasetConfig, *,
                 dense_policy: bool = False, compress: bool = False,
                 format_version: int = FORMAT_VERSION, planes: Planes | None = None,
                 extra_metadata: Mapping[str, Any] | None = None,
                 durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self.config = config
        self.dense_policy = dense_policy
        if format_version not in WRITABLE_VERSIONS:
            raise DatasetError(f"cannot write format version {format_version}; writable: "
                               f"{', '.join(map(str, WRITABLE_VERSIONS))}", path=str(self.path),
                               check="writer")
        self.format_version = format_version
        dense = format_version in DENSE_FORMAT_VERSIONS
        if planes is not None and (dense or not np.isfinite(planes.constant).all()):
            raise DatasetError("fixed planes need format 3 and finite constant planes",
                               path=str(self.path), check="writer")
        self._planes = planes
        # Format 3 decides at close how each channel is stored, from what was written.
        self._channels = (ChannelObserver(len(config.channels))
                          if not dense and planes is None else None)
        self._storage: FeatureStorage | None = None if planes is None else planes.storage
        self._compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        # Checked now, not after all the writes; the JSON round trip also detaches the copy
        # from the caller's (possibly nested, mutable) objects.
        self._extra = json.loads(_metadata_json(dict(extra_metadata or {}), str(self.path)))
        self._rows = 0
        self._nnz = 0
        self._id_width = 1
        self._id_segments: list[tuple[int, int]] = []  # (rows, width) per write, in order
        self._games = _DistinctIds()
        self._state = "open"  # then "closed" (published) or "aborted"
        # Temp names start with '.' + the output name and contain '.tmp', so a directory
        # listing of published files skips them and a sweep of '.{name}*' finds them.
        token = f".{self.path.name.lstrip('.')}.{uuid.uuid4().hex}"
        self._temp = self.path.parent / f"{token}.tmp"
        self._spool = self.path.parent / f"{token}.spool.tmp"
        self._files: dict[str, IO[bytes]] = {}
        self._spool.mkdir(mode=0o700)
        try:
            # The spool is dense (format 2's arrays) and close() packs it for format 3,
            # unless the planes are fixed: then it holds them packed.
            spooled = (file_arrays(dense_policy, DENSE_FORMAT_VERSION) if planes is None
                       else tuple(n for n in file_arrays(dense_policy) if n != FEATURE_CONSTANT))
            for name in spooled:
                self._files[name] = open(self._spool / name, "wb")
            self._files["policy_indptr"].write(np.zeros(1, "<i8").tobytes())
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> NPZDatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, rows: RowBatch | PackedRows) -> None:
        """Append ``rows``; rejects them whole (DatasetError naming array and global row) if
        any row breaks the format, so a file never holds rows the validator would refuse."""
        if self._state != "open":
            raise DatasetError(f"write after the writer was {self._state}", path=str(self.path),
                               check="writer")
        packed: PackedRows | None = None
        if self._planes is not None:
            packed = (rows.stored_as(self._planes) if isinstance(rows, PackedRows)
                      else PackedRows.from_dense(rows, self._planes))
            batch = packed.rows
        else:
            batch = rows.unpacked() if isinstance(rows, PackedRows) else rows
        for name in PER_ROW_ARRAYS:
            got, want = getattr(batch, name).shape[1:], row_shape(name, self.config)
            if packed is not None and name == "features":
                want = (0,) + want[1:]  # the planes are packed.bits and packed.floats
            if got != want:
                raise DatasetError(f"row shape {got} does not match the configuration {want}",
                                   path=str(self.path), array=name, check="shapes")
        planes = (None if packed is None else planes_problem(
            packed.floats, packed.planes.constant, self._rows, str(self.path)))
        problems = ([planes] if planes is not None else []) + content_problems(
            batch, self._rows, self.config, None, str(self.path))
        if problems:
            raise problems[0]
        try:
            if packed is not None:
                _write_raw(self._files[FEATURE_BITS], packed.bits, FIXED_DTYPES[FEATURE_BITS])
                _write_raw(self._files[FEATURE_FLOATS], packed.floats,
                           FIXED_DTYPES[FEATURE_FLOATS])
            else:
                _write_raw(self._files["features"], batch.features, FIXED_DTYPES["features"])
            for name in _FIXED_ROW_ARRAYS + ("policy_indices", "policy_values"):
                _write_raw(self._files[name], getattr(batch, name), FIXED_DTYPES[name])
            _write_raw(self._files["policy_indptr"], batch.policy_indptr[1:] + self._nnz,
                       FIXED_DTYPES["policy_indptr"])
            if len(batch):
                # Spool at this batch's own width; close() widens every segment to the maximum.
                width = int(np.char.str_len(batch.game_id).max())
                ids = batch.game_id.astype(game_id_dtype(width))
                _write_raw(self._files["game_id"], ids, ids.dtype)
                self._id_segments.append((len(batch), width))
                self._id_width = max(self._id_width, width)
                self._games.add(ids)
            if self.dense_policy:
                _write_raw(self._files[DENSE_POLICY], batch.dense_policy(self.config.policy_size),
                           FIXED_DTYPES[DENSE_POLICY])
            if self._channels is not None:
                self._channels.observe(batch.features)
            self._rows += len(batch)
            self._nnz += batch.nnz
        except BaseException:  # a half-spooled batch cannot be taken back: nothing publishes
            self.abort()
            raise

    def close(self) -> None:
        """Assemble the zip, fsync it, rename it to ``path`` and fsync the directory (no
        fsyncs unless ``durable``)."""
        if self._state == "closed":
            return
        if self._state == "aborted":
            raise DatasetError("close after abort: nothing was published", path=str(self.path),
                               check="writer")
        try:
            for f in self._files.values():
                f.close()
            if self._channels is not None:
                self._storage = self._channels.storage()
            with open(self._temp, "wb") as out:
                with zipfile.ZipFile(out, "w", self._compression, allowZip64=True) as zf:
                    checksums = {name: self._add_array(zf, name) for name in
                                 file_arrays(self.dense_policy, self.format_version)}
                    self._add_metadata(zf, checksums)
                out.flush()
                if self.durable:
                    os.fsync(out.fileno())
            os.replace(self._temp, self.path)
        except BaseException:
            self._state = "aborted"
            raise
        finally:
            self._remove_temp()
        self._state = "closed"
        if self.durable:
            fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Drop everything written so far; ``path`` is left as it was."""
        if self._state == "open":
            self._state = "aborted"
        self._remove_temp()

    def _remove_temp(self) -> None:
        for f in self._files.values():
            f.close()
        shutil.rmtree(self._spool, ignore_errors=True)
        self._temp.unlink(missing_ok=True)

    def _shape(self, name: str) -> tuple[int, ...]:
        config, storage = self.config, self._storage
        if storage is not None and name == FEATURE_BITS:
            return (self._rows, len(storage.bits), packed_width(config.height * config.width))
        if storage is not None and name == FEATURE_FLOATS:
            return (self._rows, len(storage.floats), config.height, config.width)
        if storage is not None and name == FEATURE_CONSTANT:
            return (len(storage.constant), config.height, config.width)
        if name == "policy_indptr":
            return (self._rows + 1,)
        if name in ("policy_indices", "policy_values"):
            return (self._nnz,)
        return (self._rows,) + row_shape(name, self.config)

    def _add_array(self, zf: zipfile.ZipFile, name: str) -> str:
        dtype = game_id_dtype(self._id_width) if name == "game_id" else FIXED_DTYPES[name]
        shape = self._shape(name)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
            "shape": shape})
        hasher = checksum_hasher(dtype, shape)
        info = self._zip_info(name)
        info.file_size = header.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with zf.open(info, "w", force_zip64=True) as member:
            member.write(header.getvalue())
            for block in self._spooled(name):
                hasher.update(block)
                member.write(block)
        return hasher.hexdigest()

    def _spooled(self, name: str) -> Iterator[memoryview]:
        if name == FEATURE_CONSTANT and self._planes is not None:
            yield memoryview(np.ascontiguousarray(self._planes.constant, "<f4").reshape(-1)
                             .view(np.uint8))
            return
        if name in PACKED_FEATURES and self._planes is None:
            yield from self._packed(name)
            return
        with open(self._spool / name, "rb") as f:
            if name != "game_id":
                while block := f.read(BLOCK_BYTES):
                    yield memoryview(block)
                return
            target = game_id_dtype(self._id_width)
            for rows, width in self._id_segments:
                step = max(1, BLOCK_BYTES // (4 * width))
                for done in range(0, rows, step):
                    count = min(step, rows - done)
                    ids = np.frombuffer(f.read(count * 4 * width), game_id_dtype(width))
                    yield memoryview(ids.astype(target).view(np.uint8))

    def _packed(self, name: str) -> Iterator[memoryview]:
        """A format 2 feature member, converted from the dense spool in row blocks."""
        storage, observer = self._storage, self._channels
        assert storage is not None and observer is not None
        if name == FEATURE_CONSTANT:
            if self._rows:
                assert observer.first_row is not None
                yield memoryview(storage.constant_of(observer.first_row).view(np.uint8))
            return
        row_shape_ = (len(self.config.channels), self.config.height, self.config.width)
        row_bytes = int(np.prod(row_shape_)) * 4
        # A dense block, its selection and its packed form live at once: a quarter block each.
        step = max(1, BLOCK_BYTES // 4 // row_bytes)
        with open(self._spool / "features", "rb") as f:
            while block := f.read(step * row_bytes):
                dense = np.frombuffer(block, "<f4").reshape(-1, *row_shape_)
                part = (storage.pack_bits(dense) if name == FEATURE_BITS
                        else storage.floats_of(dense))
                yield memoryview(np.ascontiguousarray(part).view(np.uint8).reshape(-1))

    def _add_metadata(self, zf: zipfile.ZipFile, checksums: dict[str, str]) -> None:
        storage = ({"feature_storage": self._storage.to_metadata()}
                   if self._storage is not None else {})
        metadata = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            **storage,
            **self.config.to_metadata(),
            "rows": self._rows,
            "games": self._games.count(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dense_policy": self.dense_policy,
            "checksums": checksums,
            "extra": self._extra,
        }
        text = _metadata_json(metadata, str(self.path))
        with zf.open(self._zip_info(METADATA), "w") as member:
            np.lib.format.write_array(member, np.array(text), allow_pickle=False)

    def _zip_info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
        info.compress_type = self._compression
        info.external_attr = 0o644 << 16
        return info


def _write_raw(f: IO[bytes], arr: np.ndarray, dtype: np.dtype) -> None:
    f.write(np.ascontiguousarray(arr, dtype=dtype).reshape(-1).view(np.uint8))


def _metadata_json(value: Any, path: str) -> str:
    """Metadata as JSON, refusing what a reader would refuse (NaN, non-JSON types, size)."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"metadata is not plain JSON: {exc}", path=path, array=METADATA,
                           check="metadata") from None
    if len(text) * 4 > MAX_METADATA_BYTES:
        raise DatasetError(f"metadata would take {len(text) * 4} bytes, more than "
                           f"{MAX_METADATA_BYTES}", path=path, array=METADATA, check="metadata")
    return text


class _DistinctIds:
    """Counts distinct game ids through 64-bit hashes: 8 bytes per game instead of the ids,
    so memory stays small on any dataset. Two ids would have to collide in 64 bits to be
    counted once (about 3e-8 for a million games)."""

    def __init__(self) -> None:
        self._seen = np.empty(0, np.uint64)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0

    def add(self, ids: np.ndarray) -> None:
        hashes = _fnv1a(np.unique(ids))
        self._pending.append(hashes)
        self._pending_size += hashes.size
        if self._pending_size > max(self._seen.size, 1 << 16):
            self._merge()

    def count(self) -> int:
        self._merge()
        return int(self._seen.size)

    def _merge(self) -> None:
        self._seen = np.unique(np.concatenate([self._seen, *self._pending]))
        self._pending, self._pending_size = [], 0


def _fnv1a(ids: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a over the code points of each id, vectorised over ids (a loop over at most
    128 columns). NUL padding of the fixed width is skipped, so the hash ignores the width."""
    codes = np.ascontiguousarray(ids).view(np.uint32).reshape(ids.shape[0], -1)
    h = np.full(ids.shape[0], _FNV_OFFSET, np.uint64)
    for column in codes.T.astype(np.uint64):
        h = np.where(column == 0, h, (h ^ column) * _FNV_PRIME)
    return h
