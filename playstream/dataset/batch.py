"""RowBatch: N training rows in memory, exactly the arrays a dataset file stores.

The batch checks its own structure (dtypes, shapes, CSR bookkeeping) on construction, so that a
malformed batch fails where it is built rather than deep inside a writer; it is frozen so that
the check cannot be bypassed by swapping an array afterwards (equality is identity: arrays
have no single truth value). Contents (NaN, ranges, policy sums) are checked by
`playstream.dataset.checks`, which needs the configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

from playstream.dataset.schema import (NDIM, PER_ROW_ARRAYS, MAX_VALUE_SEATS, dtype_matches,
                                       expected_dtype_text)
from playstream.errors import DatasetError


@dataclass(frozen=True, eq=False)
class RowBatch:
    features: np.ndarray  # float32 [N, C, H, W]
    globals: np.ndarray  # float32 [N, G]
    values: np.ndarray  # float32 [N], from the view of the seat to move
    values_mp: np.ndarray  # float32 [N, seats], by absolute seat (4 columns in format 1)
    policy_indptr: np.ndarray  # int64 [N+1], starts at 0
    policy_indices: np.ndarray  # int32 [nnz]
    policy_values: np.ndarray  # float32 [nnz]
    game_id: np.ndarray  # <U{n} [N], n <= 128
    move_number: np.ndarray  # int32 [N]
    player: np.ndarray  # int8 [N], seat to move 1..4
    num_players: np.ndarray  # int8 [N]

    def __post_init__(self) -> None:
        for f in fields(self):
            arr = getattr(self, f.name)
            if not isinstance(arr, np.ndarray):
                raise DatasetError(f"must be a numpy array, got {type(arr).__name__}",
                                   array=f.name, check="dtypes")
            if not dtype_matches(f.name, arr.dtype):
                raise DatasetError(f"dtype {arr.dtype.str}, expected {expected_dtype_text(f.name)}",
                                   array=f.name, check="dtypes")
            if arr.ndim != NDIM[f.name]:
                raise DatasetError(f"has {arr.ndim} dimensions, expected {NDIM[f.name]}",
                                   array=f.name, check="shapes")
        n = len(self)
        for name in PER_ROW_ARRAYS:
            rows = getattr(self, name).shape[0]
            if rows != n:
                raise DatasetError(f"has {rows} rows, values has {n}", array=name,
                                   check="shapes")
        if not 1 <= self.values_mp.shape[1] <= MAX_VALUE_SEATS:
            raise DatasetError(f"has {self.values_mp.shape[1]} columns, expected 1.."
                               f"{MAX_VALUE_SEATS}", array="values_mp", check="shapes")
        if self.policy_indptr.shape[0] != n + 1:
            raise DatasetError(f"has {self.policy_indptr.shape[0]} entries, expected N+1 = "
                               f"{n + 1}", array="policy_indptr", check="shapes")
        nnz = self.policy_indices.shape[0]
        if self.policy_values.shape[0] != nnz:
            raise DatasetError(f"has {self.policy_values.shape[0]} entries, policy_indices has "
                               f"{nnz}", array="policy_values", check="shapes")
        if self.policy_indptr[0] != 0 or self.policy_indptr[-1] != nnz:
            raise DatasetError(f"runs {self.policy_indptr[0]}..{self.policy_indptr[-1]}, "
                               f"expected 0..{nnz}", array="policy_indptr", check="csr")
        decreasing = np.flatnonzero(np.diff(self.policy_indptr) < 0)
        if decreasing.size:
            raise DatasetError("decreases", array="policy_indptr", row=int(decreasing[0]),
                               check="csr")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.policy_indices.shape[0])

    @classmethod
    def concat(cls, batches: Sequence[RowBatch]) -> RowBatch:
        """One batch holding the rows of ``batches`` in order (game_id widens to the widest)."""
        if not batches:
            raise DatasetError("concat needs at least one batch", check="arguments")
        first = batches[0]
        for name in PER_ROW_ARRAYS:
            tail = getattr(first, name).shape[1:]
            for b in batches[1:]:
                if getattr(b, name).shape[1:] != tail:
                    raise DatasetError(f"row shape {getattr(b, name).shape[1:]} differs from "
                                       f"{tail}", array=name, check="shapes")
        starts = np.cumsum([0] + [b.nnz for b in batches[:-1]], dtype=np.int64)
        indptr = np.concatenate([np.zeros(1, np.int64)]
                                + [b.policy_indptr[1:] + s for b, s in zip(batches, starts)])
        joined = {name: np.concatenate([getattr(b, name) for b in batches])
                  for name in PER_ROW_ARRAYS + ("policy_indices", "policy_values")}
        return cls(policy_indptr=indptr, **joined)

    def take(self, index: np.ndarray | Sequence[int]) -> RowBatch:
        """The rows at ``index`` (any order, repeats allowed), with the CSR policy re-sliced."""
        idx = np.asarray(index)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DatasetError(f"index must be a 1-D integer array, got {idx.dtype} "
                               f"{idx.shape}", check="arguments")
        idx = idx.astype(np.int64, copy=False)
        out_of_range = np.flatnonzero((idx < 0) | (idx >= len(self)))
        if out_of_range.size:
            raise DatasetError(f"index {idx[out_of_range[0]]} is outside 0..{len(self) - 1}",
                               row=int(out_of_range[0]), check="arguments")
        starts = self.policy_indptr[idx]
        lengths = self.policy_indptr[idx + 1] - starts
        indptr = np.zeros(idx.size + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        gather = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        picked = {name: getattr(self, name)[idx] for name in PER_ROW_ARRAYS}
        return RowBatch(policy_indptr=indptr, policy_indices=self.policy_indices[gather],
                        policy_values=self.policy_values[gather], **picked)

    def dense_policy(self, policy_size: int, *, out: np.ndarray | None = None,
                     moved: np.ndarray | None = None,
                     transforms: np.ndarray | None = None) -> np.ndarray:
        """float32 [N, policy_size]; indices are unique within a row by the format. With
        ``moved`` (int [K, policy_size]: the action transform k moves each action to) and
        ``transforms`` (the transform of each row), every entry lands on its moved action:
        the augmented target in the same single scatter. ``out``: the buffer to zero and
        fill (default a new array)."""
        if self.nnz and (self.policy_indices.min() < 0
                         or self.policy_indices.max() >= policy_size):
            raise DatasetError(f"indices outside 0..{policy_size - 1}", array="policy_indices",
                               check="policy")
        if out is None:
            out = np.zeros((len(self), policy_size), np.float32)
        else:
            out.fill(0)
        rows = np.repeat(np.arange(len(self)), np.diff(self.policy_indptr))
        columns = (self.policy_indices if moved is None or transforms is None
                   else moved[transforms[rows], self.policy_indices])
        out[rows, columns] = self.policy_values
        return out
