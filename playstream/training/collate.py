"""From rows held by range to one contiguous training batch: gather, augment, densify.

Everything here is whole-array numpy: a batch costs one fancy-index copy per array and per
range it draws from (and, for the planes, per transform drawn), never a Python loop over
rows or cells.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from playstream.dataset import RowBatch, RowRange
from playstream.dataset.rowrange import gather_ranges
from playstream.dataset.schema import PER_ROW_ARRAYS
from playstream.games.symmetry import Symmetries

Specs = dict[str, tuple[tuple[int, ...], np.dtype[Any]]]
# The arrays of one batch, all at once: name -> (shape, dtype) to name -> array, so a torch
# layer can place them in one shared-memory block (one file and one descriptor per batch).
Allocate = Callable[[Specs], dict[str, np.ndarray]]


def allocate_arrays(specs: Specs) -> dict[str, np.ndarray]:
    """The default `Allocate`: plain numpy memory."""
    return {name: np.empty(shape, dtype) for name, (shape, dtype) in specs.items()}


def batch_specs(parts: Sequence[tuple[RowRange, np.ndarray]], size: int, names: Sequence[str],
                extra: Specs) -> Specs:
    """Shapes and dtypes of the per-row arrays ``names`` of a batch of ``size`` rows drawn
    from ``parts`` (numeric ones only: game_id is a string array), plus ``extra``."""
    first = parts[0][0]
    specs: Specs = {}
    for name in names:
        if name == "features":
            specs[name] = ((size,) + first.plane_shape, np.dtype(np.float32))
        elif first.columns[name].dtype.kind != "U":
            specs[name] = ((size,) + first.columns[name].shape[1:], first.columns[name].dtype)
    return specs | extra


def gather(parts: Sequence[tuple[RowRange, np.ndarray]], chosen: np.ndarray | None = None,
           symmetries: Symmetries | None = None, out: Mapping[str, np.ndarray] | None = None
           ) -> tuple[RowBatch, np.ndarray | None]:
    """One batch from ``parts`` (a range, local row indices); with ``chosen`` (the transform
    of each of those rows, in the order of the parts) the planes are transformed on the way.

    Each part's rows are ordered by transform (stably), so the batch is the rows of every
    (part, transform) group in turn; the order within the batch is therefore by group (a
    batch is a set of rows: its composition is the plan's). The planes are unpacked from
    the (mapped) files, moved and written straight into the batch (`gather_ranges`), the
    other arrays copied with one fancy index per part. ``out`` holds buffers for some
    per-row arrays (those the trainer gets, in shared memory under torch, see
    `batch_specs`); the others are allocated here. Returns the batch and the transform of
    each of its rows (None without ``chosen``)."""
    pieces: list[tuple[RowRange, np.ndarray]] = []
    drawn: list[np.ndarray] = []
    offset = 0
    for rows, local in parts:
        if chosen is None:
            pieces.append((rows, local))
        else:
            mine = chosen[offset:offset + local.size]
            order = np.argsort(mine, kind="stable")
            pieces.append((rows, local[order]))
            drawn.append(mine[order])
        offset += local.size
    size = offset
    transforms = None if chosen is None else np.concatenate(drawn)
    given = out or {}
    channels, height, width = parts[0][0].plane_shape
    features = given.get("features")
    if features is None:
        features = np.empty((size, channels, height, width), np.float32)
    gather_ranges(features.reshape(size, channels, height * width), pieces, transforms,
                  None if symmetries is None else symmetries.cells,
                  None if symmetries is None else symmetries.channels)
    arrays = {}
    for name in PER_ROW_ARRAYS[1:]:
        array = given.get(name)
        if array is None:
            dtype = max((p.columns[name].dtype for p, _ in parts), key=lambda d: d.itemsize)
            array = np.empty((size,) + parts[0][0].columns[name].shape[1:], dtype)
        arrays[name] = array
    counts = np.empty(size, dtype=np.int64)
    begin = 0
    for rows, local in pieces:
        end = begin + local.size
        for name, array in arrays.items():
            array[begin:end] = rows.columns[name][local]
        counts[begin:end] = np.diff(rows.columns["policy_indptr"])[local]
        begin = end
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    values = np.empty(int(indptr[-1]), dtype=np.float32)
    begin = 0
    for rows, local in pieces:
        n = counts[begin:begin + local.size]
        offset_in_row = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        source = np.repeat(rows.columns["policy_indptr"][local], n) + offset_in_row
        target = np.repeat(indptr[begin:begin + local.size], n) + offset_in_row
        indices[target] = rows.columns["policy_indices"][source]
        values[target] = rows.columns["policy_values"][source]
        begin += local.size
    batch = RowBatch(features=features, policy_indptr=indptr, policy_indices=indices,
                     policy_values=values, **arrays)
    return batch, transforms


def augment_features(features: np.ndarray, symmetries: Symmetries,
                     chosen: np.ndarray) -> np.ndarray:
    """features [B, C, H, W] with transform ``chosen[b]`` applied to row b (cells and, if the
    game permutes them, channels). One ``np.take`` per transform drawn (at most K), which
    is several times faster than a per-element ``take_along_axis`` index. The loader fuses
    this into `gather`; this form transforms a batch already in memory (test-time
    augmentation), and is the reference the tests hold both the fused path and the game's
    re-encoded positions against."""
    batch, channels = features.shape[:2]
    flat = features.reshape(batch, channels, -1)
    out = np.empty_like(flat)
    for k in np.unique(chosen).tolist():
        rows = np.flatnonzero(chosen == k)
        moved = flat[rows] if k == 0 else np.take(flat[rows], symmetries.cells[k], axis=2)
        if symmetries.channels is not None and k != 0:
            moved = np.take(moved, symmetries.channels[k], axis=1)
        out[rows] = moved
    return out.reshape(features.shape)


def augment_dense_policy(policy: np.ndarray, symmetries: Symmetries,
                         chosen: np.ndarray) -> np.ndarray:
    return np.take_along_axis(policy, symmetries.actions[chosen], axis=1)


def augment_sparse_policy(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                          symmetries: Symmetries, chosen: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The CSR entries moved to their new actions and re-sorted within each row: the entry
    of old action j goes to the new action a with ``actions[k, a] == j``."""
    row = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    moved = symmetries.moved_actions[chosen[row], indices]
    order = np.lexsort((moved, row))
    return moved[order].astype(np.int32), values[order]
