"""Random access to row ranges of a dataset file, for readers that split a file between
processes (the training loader reads ranges of shards in a shuffled order).

`iter_row_batches` reads a file front to back; a loader worker that owns rows 40,960..41,983
of a shard must not read the 40,960 rows before them. Stored (uncompressed) members are
memory-mapped, so a range costs only its own bytes; the structure is checked once when the
file is opened and the CSR bookkeeping of every range when it is read, so a damaged file fails
with a DatasetError naming the array and row, never with a numpy error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from playstream.dataset.batch import RowBatch
from playstream.dataset.checks import csr_problem
from playstream.dataset.config import DatasetConfig
from playstream.dataset.layout import open_layout
from playstream.dataset.packing import FeatureStorage
from playstream.dataset.rowblocks import verify_checksums
from playstream.dataset.schema import (DENSE_POLICY, FEATURE_BITS, FEATURE_CONSTANT,
                                       FEATURE_FLOATS, PER_ROW_ARRAYS)
from playstream.errors import DatasetError


@dataclass(frozen=True, eq=False)
class RowRange:
    """Rows of one range as the file stores them: ``columns`` holds `RowBatch`'s arrays but
    the features (per-row ones are read-only views of the mapped file, the CSR policy a small
    copy), and the planes stay encoded until `gather_features` (or `gather_ranges`, for a
    batch drawn from several ranges) writes the rows a batch needs straight into the batch:
    a range held while its rows are dealt to batches costs no memory, and no byte of it is
    unpacked twice."""

    columns: dict[str, np.ndarray]
    storage: FeatureStorage
    planes: tuple[np.ndarray | None, np.ndarray, np.ndarray | None]  # bits, floats, constant
    plane_shape: tuple[int, int, int]  # C, H, W of the dense planes

    def __len__(self) -> int:
        return int(self.columns["values"].shape[0])

    def gather_features(self, out: np.ndarray, rows: np.ndarray | None = None,
                        cells: np.ndarray | None = None,
                        channels: np.ndarray | None = None) -> None:
        """``out[i, c, j] = planes[rows[i], channels[c], cells[j]]``, see
        `FeatureStorage.gather`."""
        self.storage.gather(out, *self.planes, rows, cells, channels)


def gather_ranges(out: np.ndarray, pieces: Sequence[tuple[RowRange, np.ndarray]],
                  transforms: np.ndarray | None = None, cells: np.ndarray | None = None,
                  channels: np.ndarray | None = None) -> None:
    """The rows of a batch drawn from several ranges into ``out`` (float32 [n, C, H*W]):
    the rows ``local`` of each (range, local) piece in turn, row i moved by transform
    ``transforms[i]`` (None: all unmoved) of the tables ``cells`` [K, H*W] and
    ``channels`` [K, C] (None: unpermuted).

    Packed ranges stored alike (the same channel kinds and constant planes, as the shards
    of one compaction are) have their rows' stored bytes joined first, then are unpacked
    and moved for the whole batch at once (`FeatureStorage.gather_moved`). Any other
    batch, dense files among them, is written per run of rows with one transform
    (`RowRange.gather_features`): a caller that orders each piece's rows by transform
    makes one call per (range, transform)."""
    if transforms is None:
        transforms = np.zeros(len(out), np.int64)
    if cells is None and transforms.any():
        raise DatasetError("transforms need their cells table", check="arguments")
    first = pieces[0][0]
    bits, _, constant = first.planes
    if first.storage.bits and bits is not None and constant is not None and all(
            rows.storage == first.storage and np.array_equal(rows.planes[2], constant)
            for rows, _ in pieces[1:]):
        joined = [np.concatenate([rows.planes[kind][local]  # type: ignore[index]
                                  for rows, local in pieces]) for kind in (0, 1)]
        first.storage.gather_moved(out, joined[0], joined[1], constant, transforms, cells,
                                   channels)
        return
    begin = 0
    for rows, local in pieces:
        mine = transforms[begin:begin + local.size]
        edges = (np.flatnonzero(mine[1:] != mine[:-1]) + 1).tolist()
        for start, stop in zip([0] + edges, edges + [local.size]):
            k = int(mine[start]) if stop > start else 0
            moved: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
            if k != 0:
                assert cells is not None
                moved = (cells[k], None if channels is None else channels[k])
            rows.gather_features(out[begin + start:begin + stop], local[start:stop], *moved)
        begin += local.size


class RowReader:
    """One open file whose rows can be read in any order, range by range.

    ``verify`` reads every array once on open and compares it with the metadata checksums
    (the data is then in the page cache for the ranges that follow).
    """

    def __init__(self, path: str | Path, *, verify: bool = True) -> None:
        self._layout = open_layout(path)
        try:
            if verify:
                verify_checksums(self._layout)
            archive, members = self._layout.archive, self._layout.members
            # Plain ndarray views of the maps: slicing an np.memmap subclass costs more than
            # the small columns it slices.
            self._maps = {name: archive.memmap(members[name]).view(np.ndarray)
                          for name in self._layout.arrays if name != DENSE_POLICY}
            self._storage = (self._layout.storage
                             or FeatureStorage.dense(len(self._layout.config.channels)))
        except BaseException:
            self._layout.close()
            raise

    @property
    def path(self) -> str:
        return self._layout.path

    @property
    def rows(self) -> int:
        return self._layout.rows

    @property
    def config(self) -> DatasetConfig:
        return self._layout.config

    @property
    def metadata(self) -> dict[str, Any]:
        return self._layout.metadata

    def read(self, start: int, stop: int) -> RowBatch:
        """Rows ``start`` .. ``stop - 1`` with dense float32 features (unpacked from the
        range's stored planes); the other per-row arrays are read-only views of the mapped
        file, the CSR arrays small copies."""
        part = self.read_range(start, stop)
        channels, height, width = part.plane_shape
        features = np.empty((len(part), channels, height, width), np.float32)
        part.gather_features(features.reshape(len(part), channels, height * width))
        return RowBatch(features=features, **part.columns)

    def read_range(self, start: int, stop: int) -> RowRange:
        """Rows ``start`` .. ``stop - 1`` with their planes still as stored, for a reader
        that copies only some of them into a batch (`RowRange.gather_features`)."""
        if not 0 <= start <= stop <= self.rows:
            raise DatasetError(f"row range {start}..{stop} is not inside 0..{self.rows}",
                               path=self.path, check="arguments")
        indptr = np.array(self._maps["policy_indptr"][start:stop + 1], dtype=np.int64)
        problem = csr_problem(indptr, start, self.config.policy_size, self.path)
        if problem is None and (indptr[0] < 0 or indptr[-1] > self._layout.nnz):
            problem = DatasetError(f"points outside the {self._layout.nnz} policy entries",
                                   path=self.path, array="policy_indptr", row=start,
                                   check="csr")
        if problem is not None:
            raise problem
        first, last = int(indptr[0]), int(indptr[-1])
        columns = {name: self._maps[name][start:stop] for name in PER_ROW_ARRAYS
                   if name != "features"}
        columns.update(policy_indptr=indptr - first,
                       policy_indices=np.array(self._maps["policy_indices"][first:last]),
                       policy_values=np.array(self._maps["policy_values"][first:last]))
        if self._layout.storage is None:
            planes = (None, self._maps["features"][start:stop], None)
        else:
            planes = (self._maps[FEATURE_BITS][start:stop],
                      self._maps[FEATURE_FLOATS][start:stop], self._maps[FEATURE_CONSTANT])
        config = self.config
        return RowRange(columns, self._storage, planes,
                        (len(config.channels), config.height, config.width))

    def close(self) -> None:
        self._maps.clear()
        self._layout.close()

    def __enter__(self) -> RowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_rows(path: str | Path, *, verify: bool = True) -> RowReader:
    """A `RowReader` on ``path``; the file must be stored uncompressed (the default of the
    writer and of compaction), since a deflated member cannot be entered in the middle."""
    return RowReader(path, verify=verify)
