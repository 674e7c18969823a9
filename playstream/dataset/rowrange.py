"""Random access to row ranges of a dataset file, for readers that split a file between
processes (the training loader reads ranges of shards in a shuffled order).

`iter_row_batches` reads a file front to back; a loader worker that owns rows 40,960..41,983
of a shard must not read the 40,960 rows before them. Stored (uncompressed) members are
memory-mapped, so a range costs only its own bytes; the structure is checked once when the
file is opened and the CSR bookkeeping of every range when it is read, so a damaged file fails
with a DatasetError naming the array and row, never with a numpy error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from playstream.dataset.batch import RowBatch
from playstream.dataset.checks import csr_problem
from playstream.dataset.config import DatasetConfig
from playstream.dataset.layout import open_layout
from playstream.dataset.rowblocks import verify_checksums
from playstream.dataset.schema import PER_ROW_ARRAYS
from playstream.errors import DatasetError


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
            self._maps = {name: archive.memmap(members[name])
                          for name in PER_ROW_ARRAYS + ("policy_indptr", "policy_indices",
                                                        "policy_values")}
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
        """Rows ``start`` .. ``stop - 1``. The per-row arrays are read-only views of the
        mapped file (a reader that gathers rows into a batch copies each byte once, straight
        from the page cache); the CSR arrays are small and copied."""
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
        return RowBatch(policy_indptr=indptr - first,
                        policy_indices=np.array(self._maps["policy_indices"][first:last]),
                        policy_values=np.array(self._maps["policy_values"][first:last]),
                        **{name: self._maps[name][start:stop] for name in PER_ROW_ARRAYS})

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
