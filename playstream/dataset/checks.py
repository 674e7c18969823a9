"""Content rules for rows: the writer enforces them before writing, the validator re-runs them
on a file block by block, so both accept exactly the same data.

Each check returns the first problem as a DatasetError (check name, array, global row) instead
of raising it: the writer raises it, the validator records it and goes on with other checks.
"""
from __future__ import annotations

import numpy as np

from playstream.dataset.batch import RowBatch
from playstream.dataset.config import DatasetConfig
from playstream.dataset.schema import DENSE_POLICY, FLOAT_ARRAYS, POLICY_SUM_TOLERANCE
from playstream.errors import DatasetError

CONTENT_CHECKS = ("finite", "value_range", "policy", "dense_policy", "row_fields")


def row_shape(name: str, config: DatasetConfig) -> tuple[int, ...]:
    """Shape of one row of a per-row array under ``config`` (() for scalars per row)."""
    return {
        "features": (len(config.channels), config.height, config.width),
        "globals": (len(config.global_names),),
        "values_mp": (config.value_seats,),
        DENSE_POLICY: (config.policy_size,),
    }.get(name, ())


def csr_problem(indptr: np.ndarray, row_offset: int, policy_size: int,
                path: str | None) -> DatasetError | None:
    """Row boundaries ``indptr`` (global offsets of rows row_offset.. plus one) must not
    decrease, and a row cannot hold more entries than there are distinct policy indices."""
    lengths = np.diff(indptr)
    bad = np.flatnonzero(lengths < 0)
    if bad.size:
        return DatasetError(f"decreases ({indptr[bad[0]]} -> {indptr[bad[0] + 1]})", path=path,
                            array="policy_indptr", row=row_offset + int(bad[0]), check="csr")
    bad = np.flatnonzero(lengths > policy_size)
    if bad.size:
        return DatasetError(f"row has {lengths[bad[0]]} entries, more than policy_size "
                            f"{policy_size}", path=path, array="policy_indptr",
                            row=row_offset + int(bad[0]), check="csr")
    return None


def content_problems(batch: RowBatch, row_offset: int, config: DatasetConfig,
                     dense: np.ndarray | None, path: str | None) -> list[DatasetError]:
    """The first problem of each content check in ``batch`` (rows row_offset..), in
    CONTENT_CHECKS order; ``dense`` is the stored dense policy of these rows, if any."""
    policy = _policy(batch, row_offset, config.policy_size, path)
    # Densifying needs indices in range: when the policy check fails, agreement is not known.
    dense_check = (None if dense is None or policy is not None
                   else _dense_agrees(batch, dense, row_offset, config.policy_size, path))
    found = [
        _finite(batch, dense, row_offset, path),
        _value_range(batch, row_offset, path),
        policy,
        dense_check,
        _row_fields(batch, row_offset, config.num_players, path),
    ]
    return [p for p in found if p is not None]


def _per_row(arr: np.ndarray) -> np.ndarray:
    """[N, ...] as [N, K]; unlike reshape(N, -1) it also works for N == 0."""
    return arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:], dtype=np.int64)))


def _entry_rows(batch: RowBatch) -> np.ndarray:
    return np.repeat(np.arange(len(batch)), np.diff(batch.policy_indptr))


def _finite(batch: RowBatch, dense: np.ndarray | None, row_offset: int,
            path: str | None) -> DatasetError | None:
    for name in FLOAT_ARRAYS:
        arr = dense if name == DENSE_POLICY else getattr(batch, name)
        if arr is None or _all_finite(arr):
            continue
        if name == "policy_values":
            entry = int(np.flatnonzero(~np.isfinite(arr))[0])
            row = int(_entry_rows(batch)[entry])
        else:
            row = int(np.flatnonzero(~np.isfinite(_per_row(arr)).all(axis=1))[0])
        return DatasetError("holds NaN or Inf", path=path, array=name, row=row_offset + row,
                            check="finite")
    return None


def planes_problem(floats: np.ndarray, constant: np.ndarray, row_offset: int,
                   path: str | None) -> DatasetError | None:
    """The finite check of packed planes (format 3's float channels [N, Cf, H, W] and the
    constant planes every row shares): bits hold 0 or 1 by construction, so only these can
    hold NaN or Inf. Reported on ``features`` at the row the dense rows would show it."""
    if floats.shape[0] and not _all_finite(constant):
        bad = 0
    elif not _all_finite(floats):
        bad = int(np.flatnonzero(~np.isfinite(_per_row(floats)).all(axis=1))[0])
    else:
        return None
    return DatasetError("holds NaN or Inf", path=path, array="features", row=row_offset + bad,
                        check="finite")


def _all_finite(arr: np.ndarray) -> bool:
    # A float64 sum of float32 values cannot overflow, so it is finite exactly when every
    # element is: one cheap pass, and the per-row search only runs on a bad block.
    with np.errstate(invalid="ignore"):  # inf + -inf: the NaN sum is the answer
        return bool(np.isfinite(arr.sum(dtype=np.float64)))


def _value_range(batch: RowBatch, row_offset: int, path: str | None) -> DatasetError | None:
    for name in ("values", "values_mp"):
        arr = _per_row(getattr(batch, name))
        bad = np.flatnonzero(~((arr >= -1) & (arr <= 1)).all(axis=1))
        if bad.size:
            return DatasetError(f"value {arr[bad[0]].tolist()} outside [-1, 1]", path=path,
                                array=name, row=row_offset + int(bad[0]), check="value_range")
    return None


def _policy(batch: RowBatch, row_offset: int, policy_size: int,
            path: str | None) -> DatasetError | None:
    idx, vals = batch.policy_indices, batch.policy_values
    entry_row = _entry_rows(batch)

    def problem(array: str, local_row: int, message: str) -> DatasetError:
        return DatasetError(message, path=path, array=array, row=row_offset + local_row,
                            check="policy")

    bad = np.flatnonzero((idx < 0) | (idx >= policy_size))
    if bad.size:
        return problem("policy_indices", int(entry_row[bad[0]]),
                       f"index {idx[bad[0]]} outside 0..{policy_size - 1}")
    bad = np.flatnonzero(~(vals >= 0))
    if bad.size:
        return problem("policy_values", int(entry_row[bad[0]]), f"negative probability "
                       f"{vals[bad[0]]}")
    sums = np.bincount(entry_row, weights=vals, minlength=len(batch))
    bad = np.flatnonzero(~(np.abs(sums - 1.0) <= POLICY_SUM_TOLERANCE))
    if bad.size:
        return problem("policy_values", int(bad[0]), f"row sums to {sums[bad[0]]:.6g}, not 1 "
                       f"(tolerance {POLICY_SUM_TOLERANCE})")
    keys = np.sort(entry_row * np.int64(policy_size) + idx)
    dup = np.flatnonzero(keys[1:] == keys[:-1])
    if dup.size:
        return problem("policy_indices", int(keys[dup[0]] // policy_size),
                       f"index {keys[dup[0]] % policy_size} appears twice in the row")
    return None


def _dense_agrees(batch: RowBatch, dense: np.ndarray, row_offset: int, policy_size: int,
                  path: str | None) -> DatasetError | None:
    bad = np.flatnonzero(~(dense == batch.dense_policy(policy_size)).all(axis=1))
    if bad.size:
        return DatasetError("dense policy row differs from the CSR policy", path=path,
                            array=DENSE_POLICY, row=row_offset + int(bad[0]),
                            check="dense_policy")
    return None


def _row_fields(batch: RowBatch, row_offset: int, num_players: int,
                path: str | None) -> DatasetError | None:
    rules = (
        ("num_players", batch.num_players != num_players,
         f"differs from the dataset's num_players {num_players}"),
        ("player", (batch.player < 1) | (batch.player > batch.num_players),
         "seat to move outside 1..num_players"),
        ("move_number", batch.move_number < 0, "is negative"),
        ("game_id", np.char.str_len(batch.game_id) == 0, "is empty"),
    )
    for array, mask, message in rules:
        bad = np.flatnonzero(mask)
        if bad.size:
            return DatasetError(message, path=path, array=array, row=row_offset + int(bad[0]),
                                check="row_fields")
    return None
