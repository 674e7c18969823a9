"""Reading a checked file in row blocks, every array in step, in bounded memory.

Each array is read sequentially by its own stream, so the checksums are computed on the way at
no extra I/O; the CSR boundaries are checked before the policy entries of a block are read, so
a hostile policy_indptr cannot make a block unbounded.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from playstream.dataset.archive import MemberStream
from playstream.dataset.batch import RowBatch
from playstream.dataset.checks import csr_problem
from playstream.dataset.layout import Layout
from playstream.dataset.packing import PackedRows, Planes
from playstream.dataset.schema import (DENSE_POLICY, FEATURE_BITS, FEATURE_CONSTANT,
                                       FEATURE_FLOATS, PER_ROW_ARRAYS, per_row_arrays)
from playstream.errors import DatasetError


def block_rows_for(layout: Layout, budget_bytes: int) -> int:
    """Rows per block so that one block (with the worst-case policy entries) fits the budget."""
    per_row = sum(layout.members[name].item_bytes
                  for name in per_row_arrays(DENSE_POLICY in layout.members, layout.version))
    per_row += 8 * layout.config.policy_size + 8  # indices + values of a full row, indptr
    if layout.storage is not None:  # packed planes are unpacked to dense float32 in memory
        config = layout.config
        per_row += 4 * len(config.channels) * config.height * config.width
    return max(1, budget_bytes // per_row)


def iter_blocks(layout: Layout, block_rows: int, *, verify: bool
                ) -> Iterator[tuple[int, RowBatch, np.ndarray | None]]:
    """Yield (first row, rows, stored dense policy of those rows or None). With ``verify`` the
    checksums are compared after the last block: a DatasetError then ends the iteration, so a
    consumer that writes what it reads must not publish before the iterator is exhausted."""
    with member_streams(layout, verify=verify) as streams:
        yield from _blocks(layout, streams, block_rows, features_reader(layout, streams))
        if verify:
            compare_checksums(layout, streams)


def iter_packed_blocks(layout: Layout, block_rows: int, *, verify: bool
                       ) -> Iterator[tuple[int, PackedRows, np.ndarray | None]]:
    """`iter_blocks` for a format 3 file, with the planes as stored (not unpacked)."""
    storage, config = layout.storage, layout.config
    if storage is None:
        raise DatasetError("has dense planes (format 1 or 2), not packed ones",
                           path=layout.path, check="arguments")
    with member_streams(layout, verify=verify) as streams:
        planes = Planes(storage, streams[FEATURE_CONSTANT].read_all())

        def none(count: int) -> np.ndarray:
            return np.empty((count, 0, config.height, config.width), np.float32)

        for start, rows, dense in _blocks(layout, streams, block_rows, none):
            yield start, PackedRows(planes, streams[FEATURE_BITS].read(len(rows)),
                                    streams[FEATURE_FLOATS].read(len(rows)), rows), dense
        if verify:
            compare_checksums(layout, streams)


def _blocks(layout: Layout, streams: dict[str, MemberStream], block_rows: int,
            read_features: Callable[[int], np.ndarray]
            ) -> Iterator[tuple[int, RowBatch, np.ndarray | None]]:
    if block_rows < 1:
        raise DatasetError(f"block_rows must be at least 1, got {block_rows}",
                           path=layout.path, check="arguments")
    end = int(streams["policy_indptr"].read(1)[0])
    if end != 0:
        raise DatasetError(f"starts at {end}, not 0", path=layout.path,
                           array="policy_indptr", row=0, check="csr")
    for start in range(0, layout.rows, block_rows):
        count = min(block_rows, layout.rows - start)
        indptr = np.concatenate(([end], streams["policy_indptr"].read(count)))
        problem = csr_problem(indptr, start, layout.config.policy_size, layout.path)
        if problem is None and indptr[-1] > layout.nnz:
            problem = DatasetError(f"points past the {layout.nnz} policy entries",
                                   path=layout.path, array="policy_indptr",
                                   row=start + int(np.argmax(indptr > layout.nnz)) - 1,
                                   check="csr")
        if problem is not None:
            raise problem
        entries = int(indptr[-1] - indptr[0])
        rows = RowBatch(policy_indptr=indptr - indptr[0],
                        policy_indices=streams["policy_indices"].read(entries),
                        policy_values=streams["policy_values"].read(entries),
                        features=read_features(count),
                        **{name: streams[name].read(count) for name in PER_ROW_ARRAYS
                           if name != "features"})
        dense = streams[DENSE_POLICY].read(count) if DENSE_POLICY in streams else None
        yield start, rows, dense
        end = int(indptr[-1])
    if end != layout.nnz:
        raise DatasetError(f"ends at {end} but there are {layout.nnz} policy entries",
                           path=layout.path, array="policy_indptr", check="csr")


def features_reader(layout: Layout, streams: dict[str, MemberStream]
                    ) -> Callable[[int], np.ndarray]:
    """``read(count)`` → the next ``count`` rows of dense float32 features, whichever format
    the file has (format 2's constant planes are read once, here)."""
    storage, config = layout.storage, layout.config
    if storage is None:
        return streams["features"].read
    constant = streams[FEATURE_CONSTANT].read_all()

    def read(count: int) -> np.ndarray:
        return storage.unpack(streams[FEATURE_BITS].read(count),
                              streams[FEATURE_FLOATS].read(count), constant, config.height,
                              config.width)

    return read


@contextmanager
def member_streams(layout: Layout, *, verify: bool) -> Iterator[dict[str, MemberStream]]:
    """One stream per checksummed array, closed on exit."""
    streams = {name: MemberStream(layout.archive, layout.members[name], verify=verify)
               for name in layout.arrays}
    try:
        yield streams
    finally:
        for stream in streams.values():
            stream.close()


def verify_checksums(layout: Layout) -> None:
    """Read every array once, in blocks, and compare with the metadata checksums."""
    with member_streams(layout, verify=True) as streams:
        for stream in streams.values():
            stream.drain()
        compare_checksums(layout, streams)


def compare_checksums(layout: Layout, streams: dict[str, MemberStream]) -> None:
    for name, stream in streams.items():
        if stream.hexdigest() != layout.metadata["checksums"][name]:
            raise DatasetError("sha256 of the array does not match the metadata checksum "
                               "(the data, its dtype or its shape changed)", path=layout.path,
                               array=name, check="checksums")
        if not stream.crc_matches():
            raise DatasetError("the member's zip CRC-32 does not match (np.load would refuse "
                               "it)", path=layout.path, array=name, check="checksums")
