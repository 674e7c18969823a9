"""From rows held by range to one contiguous training batch: gather, augment, densify.

Everything here is whole-array numpy: a batch costs one fancy-index copy per array and per
range it draws from, never a Python loop over rows or cells.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from playstream.dataset import RowBatch
from playstream.dataset.schema import PER_ROW_ARRAYS
from playstream.games.symmetry import Symmetries


def gather(parts: Sequence[tuple[RowBatch, np.ndarray, np.ndarray]], size: int) -> RowBatch:
    """One RowBatch of ``size`` rows; each part (rows, local, slots) puts
    ``rows[local[j]]`` at row ``slots[j]``, and the slots of all parts cover 0..size-1."""
    first = parts[0][0]
    out = {name: np.empty((size,) + getattr(first, name).shape[1:],
                          dtype=max((getattr(p, name).dtype for p, _, _ in parts),
                                    key=lambda d: d.itemsize))
           for name in PER_ROW_ARRAYS}
    lengths = np.zeros(size, dtype=np.int64)
    for rows, local, slots in parts:
        for name in PER_ROW_ARRAYS:
            out[name][slots] = getattr(rows, name)[local]
        lengths[slots] = np.diff(rows.policy_indptr)[local]
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    values = np.empty(int(indptr[-1]), dtype=np.float32)
    for rows, local, slots in parts:
        n = np.diff(rows.policy_indptr)[local]
        target_start = np.repeat(indptr[slots], n)
        offset = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        source = np.repeat(rows.policy_indptr[local], n) + offset
        indices[target_start + offset] = rows.policy_indices[source]
        values[target_start + offset] = rows.policy_values[source]
    return RowBatch(policy_indptr=indptr, policy_indices=indices, policy_values=values, **out)


def augment_features(features: np.ndarray, symmetries: Symmetries,
                     chosen: np.ndarray) -> np.ndarray:
    """features [B, C, H, W] with transform ``chosen[b]`` applied to row b (cells and, if the
    game permutes them, channels)."""
    batch, channels = features.shape[:2]
    flat = features.reshape(batch, channels, -1)
    cells = symmetries.cells[chosen]  # [B, H*W]
    out = np.take_along_axis(flat, cells[:, None, :], axis=2)
    if symmetries.channels is not None:
        out = np.take_along_axis(out, symmetries.channels[chosen][:, :, None], axis=1)
    return out.reshape(features.shape)


def augment_dense_policy(policy: np.ndarray, symmetries: Symmetries,
                         chosen: np.ndarray) -> np.ndarray:
    return np.take_along_axis(policy, symmetries.actions[chosen], axis=1)


def augment_sparse_policy(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                          symmetries: Symmetries, chosen: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The CSR entries moved to their new actions and re-sorted within each row: the entry
    of old action j goes to the new action a with ``actions[k, a] == j``."""
    inverse = np.argsort(symmetries.actions, axis=1)  # [K, A]: old action -> new action
    row = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    moved = inverse[chosen[row], indices]
    order = np.lexsort((moved, row))
    return moved[order].astype(np.int32), values[order]
