"""Loading datasets: whole (optionally memory-mapped), in row batches, or just the metadata.

Every entry point checks the file's structure first (the same checks as the validator), so a
foreign or damaged file fails with a DatasetError naming the array instead of a numpy error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from playstream.dataset.archive import Archive
from playstream.dataset.batch import RowBatch
from playstream.dataset.config import DatasetConfig
from playstream.dataset.layout import open_layout
from playstream.dataset.packing import ChannelObserver, PackedRows, Planes
from playstream.dataset.rowblocks import (compare_checksums, iter_blocks, iter_packed_blocks,
                                          member_streams, verify_checksums)
from playstream.dataset.schema import (BATCH_ARRAYS, DENSE_POLICY, FEATURE_BITS,
                                       FEATURE_CONSTANT, FEATURE_FLOATS, METADATA)
from playstream.errors import DatasetError


@dataclass(eq=False)
class Dataset:
    config: DatasetConfig
    metadata: dict[str, Any]
    rows: RowBatch
    policy: np.ndarray | None  # the stored dense policy, for files written with it

    def __len__(self) -> int:
        return len(self.rows)


def load_npz_dataset(path: str | Path, *, verify: bool = True, mmap: bool = False) -> Dataset:
    """The whole file in memory, or with ``mmap`` as read-only maps of the file (needs a file
    written without compression; format 2's packed planes are unpacked into memory, the other
    arrays stay mapped). ``verify`` compares every array with its checksum; it reads the data
    once more when mapping. ``rows.features`` is always dense float32 [N, C, H, W]."""
    with open_layout(path) as layout:
        if mmap:
            arrays = {name: layout.archive.memmap(layout.members[name])
                      for name in layout.arrays}
            if verify:
                verify_checksums(layout)
        else:
            with member_streams(layout, verify=verify) as streams:
                arrays = {name: stream.read_all() for name, stream in streams.items()}
                if verify:
                    compare_checksums(layout, streams)
        if layout.storage is not None:  # format 2: rebuild the dense planes
            config = layout.config
            arrays["features"] = layout.storage.unpack(
                np.asarray(arrays.pop(FEATURE_BITS)), np.asarray(arrays.pop(FEATURE_FLOATS)),
                np.asarray(arrays.pop(FEATURE_CONSTANT)), config.height, config.width)
        try:
            rows = RowBatch(**{name: arrays[name] for name in BATCH_ARRAYS})
        except DatasetError as err:  # e.g. a decreasing policy_indptr: say which file
            raise DatasetError(err.message, path=layout.path, array=err.array, row=err.row,
                               check=err.check) from None
        return Dataset(layout.config, layout.metadata, rows, arrays.get(DENSE_POLICY))


def iter_row_batches(path: str | Path, batch_rows: int, *, verify: bool = True
                     ) -> Iterator[RowBatch]:
    """The rows of ``path`` in batches of ``batch_rows`` (the last may be shorter), reading
    each array sequentially. With ``verify`` a checksum mismatch raises after the last batch:
    finish the iteration before publishing anything derived from it."""
    with open_layout(path) as layout:
        for _, rows, _ in iter_blocks(layout, batch_rows, verify=verify):
            yield rows


def iter_packed_row_batches(path: str | Path, batch_rows: int, planes: Planes, *,
                            verify: bool = True) -> Iterator[PackedRows]:
    """`iter_row_batches` with the planes stored under ``planes``: as read from a format 3
    file that stores them so, converted otherwise (dense files are packed on the way)."""
    with open_layout(path) as layout:
        if layout.storage is None:
            for _, rows, _ in iter_blocks(layout, batch_rows, verify=verify):
                yield PackedRows.from_dense(rows, planes)
        else:
            for _, packed, _ in iter_packed_blocks(layout, batch_rows, verify=verify):
                yield packed.stored_as(planes)


def read_planes(path: str | Path, batch_rows: int) -> Planes:
    """How ``path`` stores its planes: from the metadata and the constant planes of a
    format 3 file; observed over the rows of a dense one (in batches, unverified)."""
    with open_layout(path) as layout:
        if layout.storage is not None:
            with member_streams(layout, verify=False) as streams:
                return Planes(layout.storage, streams[FEATURE_CONSTANT].read_all())
        observer = ChannelObserver(len(layout.config.channels))
        for _, rows, _ in iter_blocks(layout, batch_rows, verify=False):
            observer.observe(rows.features)
        return observer.planes(layout.config.height, layout.config.width)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata dict, reading only the central directory and the metadata member."""
    with Archive(path) as archive:
        if METADATA not in archive.infos:
            raise DatasetError("required array is missing", path=archive.path, array=METADATA,
                               check="members")
        return archive.read_metadata(archive.read_header(METADATA))
