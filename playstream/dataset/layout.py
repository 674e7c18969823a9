"""The structure of a dataset file, checked from headers and metadata alone (no array data).

The validator runs these checks one by one to report each; the reader runs the same ones and
raises the first failure. Later checks rely on earlier ones (dtypes need headers, shapes need
dtypes), so a run stops at the first failure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from playstream.dataset.archive import Archive, Member
from playstream.dataset.checks import row_shape
from playstream.dataset.config import DatasetConfig
from playstream.dataset.packing import FeatureStorage, packed_width
from playstream.dataset.schema import (DENSE_FORMAT_VERSION, DENSE_FORMAT_VERSIONS, DENSE_POLICY, FEATURE_BITS,
                                       FEATURE_CONSTANT, FEATURE_FLOATS, FORMAT_VERSION, METADATA,
                                       NDIM, REQUIRED_METADATA_KEYS, dtype_matches,
                                       expected_dtype_text, file_arrays, per_row_arrays)
from playstream.errors import DatasetError

STRUCTURE_CHECKS = ("zip", "npy_headers", "no_pickle", "members", "dtypes", "shapes",
                    "metadata")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass
class Layout:
    """A file whose structure passed every check: members, metadata and configuration."""

    archive: Archive
    members: dict[str, Member]
    metadata: dict[str, Any]
    config: DatasetConfig
    version: int
    storage: FeatureStorage | None  # format 2: how the feature channels are stored

    @property
    def path(self) -> str:
        return self.archive.path

    @property
    def rows(self) -> int:
        return self.members["values"].shape[0]

    @property
    def nnz(self) -> int:
        return self.members["policy_indices"].shape[0]

    @property
    def arrays(self) -> tuple[str, ...]:
        return file_arrays(DENSE_POLICY in self.members, self.version)

    def close(self) -> None:
        self.archive.close()

    def __enter__(self) -> Layout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Inspection:
    """State carried from one structure check to the next."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.archive: Archive | None = None
        self.members: dict[str, Member] = {}
        self.metadata: dict[str, Any] = {}
        self.config: DatasetConfig | None = None
        self.storage: FeatureStorage | None = None
        self.version = FORMAT_VERSION  # told apart by the members; metadata must agree

    @property
    def dense(self) -> bool:
        return DENSE_POLICY in self.members

    def fail(self, message: str, check: str, array: str | None = None) -> DatasetError:
        return DatasetError(message, path=self.path, array=array, check=check)

    def zip(self) -> None:
        self.archive = Archive(self.path)

    def npy_headers(self) -> None:
        assert self.archive is not None
        self.members = {name: self.archive.read_header(name) for name in self.archive.infos}

    def no_pickle(self) -> None:
        for m in self.members.values():
            if m.dtype.hasobject:
                raise self.fail(f"has object dtype {m.dtype.str}: reading it would unpickle, "
                                f"which the format forbids (the data was not read)",
                                "no_pickle", m.name)

    def members_present(self) -> None:
        if "features" in self.members:
            self.version = DENSE_FORMAT_VERSION
        expected = file_arrays(False, self.version) + (METADATA,)
        for name in expected:
            if name not in self.members:
                raise self.fail("required array is missing", "members", name)
        for name in self.members:
            if name not in expected + (DENSE_POLICY,):
                raise self.fail(f"is not an array of format {self.version}", "members", name)

    def dtypes(self) -> None:
        for m in self.members.values():
            if m.name != METADATA and not dtype_matches(m.name, m.dtype):
                raise self.fail(f"dtype {m.dtype.str}, expected {expected_dtype_text(m.name)}",
                                "dtypes", m.name)

    def shapes(self) -> None:
        for m in self.members.values():
            if m.fortran_order:
                raise self.fail("is stored in Fortran order; the format is C order", "shapes",
                                m.name)
            if m.header_bytes + m.nbytes != m.info.file_size:
                raise self.fail(f"header says {m.shape} ({m.nbytes} bytes) but the member holds "
                                f"{m.info.file_size - m.header_bytes} bytes", "shapes", m.name)
            expected_ndim = 0 if m.name == METADATA else NDIM[m.name]
            if len(m.shape) != expected_ndim:
                raise self.fail(f"has shape {m.shape}, expected {expected_ndim} dimensions",
                                "shapes", m.name)
        n = self.members["values"].shape[0]
        for name in per_row_arrays(self.dense, self.version):
            rows = self.members[name].shape[0]
            if rows != n:
                raise self.fail(f"has {rows} rows, values has {n}", "shapes", name)
        if self.members["policy_indptr"].shape[0] != n + 1:
            raise self.fail(f"has {self.members['policy_indptr'].shape[0]} entries, expected "
                            f"N+1 = {n + 1}", "shapes", "policy_indptr")
        nnz = self.members["policy_indices"].shape[0]
        if self.members["policy_values"].shape[0] != nnz:
            raise self.fail(f"has {self.members['policy_values'].shape[0]} entries, "
                            f"policy_indices has {nnz}", "shapes", "policy_values")

    def metadata_complete(self) -> None:
        assert self.archive is not None
        meta = self.archive.read_metadata(self.members[METADATA])
        for key in REQUIRED_METADATA_KEYS:
            if key not in meta:
                raise self.fail(f"required key {key!r} is missing", "metadata", METADATA)
        try:
            config = DatasetConfig.from_metadata(meta)
        except DatasetError as err:
            raise self.fail(err.message, "metadata", METADATA) from None
        dense = self.dense
        n = self.members["values"].shape[0]
        version = meta["format_version"]
        if (version in DENSE_FORMAT_VERSIONS) != (self.version in DENSE_FORMAT_VERSIONS):
            raise self.fail(f"format_version is {version}, but the members are those of "
                            f"format {self.version}", "metadata", METADATA)
        self.version = version
        if self.version not in DENSE_FORMAT_VERSIONS:
            try:
                self.storage = FeatureStorage.from_metadata(meta.get("feature_storage"),
                                                            len(config.channels), self.path)
            except DatasetError as err:
                raise self.fail(err.message, "metadata", METADATA) from None
        for name in per_row_arrays(dense, self.version) + (
                (FEATURE_CONSTANT,) if self.storage else ()):
            want = self._stored_shape(name, config)
            got = self.members[name].shape[1:] if name != FEATURE_CONSTANT \
                else self.members[name].shape
            if got != want:
                raise self.fail(f"row shape {got} disagrees with the metadata ({want}: "
                                f"channels, feature_storage, global_names, height, width, "
                                f"policy_size)", "metadata", name)
        rules: list[tuple[bool, str]] = [
            (_is_int(meta["rows"]) and meta["rows"] == n,
             f"rows is {meta['rows']!r}, the arrays hold {n}"),
            (meta["dense_policy"] is dense,
             f"dense_policy is {meta['dense_policy']!r} but the array is "
             f"{'present' if dense else 'absent'}"),
            (_is_int(meta["games"]) and 0 <= meta["games"] <= n,
             f"games is {meta['games']!r}, not in 0..{n}"),
            (isinstance(meta["extra"], dict), "extra is not an object"),
            (_is_iso_time(meta["created_at"]),
             f"created_at {meta['created_at']!r} is not an ISO time"),
            (isinstance(meta["checksums"], dict)
             and set(meta["checksums"]) == set(file_arrays(dense, self.version))
             and all(isinstance(v, str) and _SHA256_HEX.fullmatch(v)
                     for v in meta["checksums"].values()),
             "checksums must map every array except metadata to a sha256 hex digest"),
        ]
        for ok, message in rules:
            if not ok:
                raise self.fail(message, "metadata", METADATA)
        self.metadata, self.config = meta, config

    def _stored_shape(self, name: str, config: DatasetConfig) -> tuple[int, ...]:
        """Shape of one row of a stored array (of the whole array for the constant planes)."""
        storage, h, w = self.storage, config.height, config.width
        if storage is not None and name == FEATURE_BITS:
            return (len(storage.bits), packed_width(h * w))
        if storage is not None and name == FEATURE_FLOATS:
            return (len(storage.floats), h, w)
        if storage is not None and name == FEATURE_CONSTANT:
            return (len(storage.constant), h, w)
        return row_shape(name, config)

    def steps(self) -> tuple[tuple[str, Callable[[], None]], ...]:
        return tuple(zip(STRUCTURE_CHECKS, (
            self.zip, self.npy_headers, self.no_pickle, self.members_present, self.dtypes,
            self.shapes, self.metadata_complete)))

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_iso_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def check_structure(path: str | Path,
                    record: Callable[[str, DatasetError | None], None]) -> Layout | None:
    """Run the structure checks in order, passing each outcome to ``record``. Stops at the
    first failure (returns None); otherwise returns the open Layout, which the caller closes."""
    state = _Inspection(path)
    for name, step in state.steps():
        try:
            step()
        except DatasetError as err:
            state.close()
            record(name, err)
            return None
        record(name, None)
    assert state.archive is not None and state.config is not None
    return Layout(state.archive, state.members, state.metadata, state.config, state.version,
                  state.storage)


def open_layout(path: str | Path) -> Layout:
    """The checked structure of ``path``; DatasetError for its first structural problem."""
    def raise_failure(_: str, err: DatasetError | None) -> None:
        if err is not None:
            raise err

    layout = check_structure(path, raise_failure)
    assert layout is not None
    return layout
