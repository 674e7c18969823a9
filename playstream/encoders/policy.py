"""Policy targets for a game's sampled rows, as CSR arrays.

A move with search statistics gets its visit distribution as a soft target; a move without
gets a one-hot on the move actually played, so every row has a target and no soft target is
dropped for a key format mismatch (targets are keyed by policy index from the start).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Iterable, Sequence

import numpy as np

from playstream.errors import RecordError
from playstream.records import PROBABILITY_TOLERANCE

SoftTarget = tuple[Sequence[int], Sequence[float], float]
"""One move's soft policy target as plain sequences, as the encoder takes it from a record's
`MoveSearch` (or any other source): policy indices, their probabilities, the root value."""


@dataclass(frozen=True)
class PolicyTargets:
    """Row r's target is ``indices[indptr[r]:indptr[r+1]]`` with ``values`` of the same span;
    indices are sorted within a row and values sum to 1."""

    indptr: np.ndarray  # int64 [R+1]
    indices: np.ndarray  # int32 [nnz]
    values: np.ndarray  # float32 [nnz]


def build_policy_targets(moves: np.ndarray, search: Sequence[SoftTarget | None],
                         rows: np.ndarray, num_actions: int, *,
                         game_id: str | None = None) -> PolicyTargets:
    """Targets for the rows ``rows`` (move numbers) of one game of ``num_actions`` actions.

    ``moves[t]`` is the move played at t and ``search[t]`` its statistics or None. Rejects
    (RecordError naming the field: ``search[t]`` for a move with statistics, ``moves[t]``
    for the one-hot target of a move without) mismatched list lengths, empty
    distributions, non-integer, out-of-range or repeated indices, and negative, non-finite or
    non-normalised probabilities.
    Legality is the game's: `playstream.records.check_rules` replays the game and refuses
    search entries that are not legal where they were searched.
    """
    rows = np.asarray(rows, dtype=np.int64)
    picked = [search[t] for t in rows.tolist()]
    fields = [f"moves[{t}]" if s is None else f"search[{t}]" for t, s in zip(rows.tolist(),
                                                                           picked)]
    n_indices = np.fromiter((1 if s is None else len(s[0]) for s in picked), np.int64, rows.size)
    n_probs = np.fromiter((1 if s is None else len(s[1]) for s in picked), np.int64, rows.size)
    _reject_rows(n_indices != n_probs, fields, game_id,
                 "search statistics have different numbers of indices and probabilities")
    _reject_rows(n_indices == 0, fields, game_id, "search statistics are empty")
    _reject_rows(n_indices > num_actions, fields, game_id,
                 f"search statistics have more entries than the {num_actions} actions")

    played = moves[rows].tolist()
    indices = _flat_array(chain.from_iterable(
        (m,) if s is None else s[0] for m, s in zip(played, picked)), "iu", "policy indices",
        game_id).astype(np.int64)
    probs = _flat_array(chain.from_iterable((1.0,) if s is None else s[1] for s in picked),
                        "iuf", "probabilities", game_id).astype(np.float64)
    entry_row = np.repeat(np.arange(rows.size), n_indices)

    in_range = (indices >= 0) & (indices < num_actions)
    _reject_entries(~in_range, entry_row, fields, game_id,
                    f"policy index is not an action in 0..{num_actions - 1}")
    _reject_entries(~np.isfinite(probs) | (probs < 0), entry_row, fields, game_id,
                    "probability is negative or not finite")
    sums = np.bincount(entry_row, weights=probs, minlength=rows.size)
    _reject_rows(np.abs(sums - 1.0) > PROBABILITY_TOLERANCE, fields, game_id,
                 f"probabilities do not sum to 1 (tolerance {PROBABILITY_TOLERANCE})")

    order = np.lexsort((indices, entry_row))
    indices, probs, entry_row = indices[order], probs[order], entry_row[order]
    repeated = np.zeros(indices.size, dtype=bool)
    repeated[1:] = (entry_row[1:] == entry_row[:-1]) & (indices[1:] == indices[:-1])
    _reject_entries(repeated, entry_row, fields, game_id, "policy index appears twice")

    indptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(n_indices, out=indptr[1:])
    # Rescaling within the tolerance removes rounding only, so the targets sum to 1 exactly.
    values = (probs / sums[entry_row]).astype(np.float32)
    return PolicyTargets(indptr=indptr, indices=indices.astype(np.int32), values=values)


def _flat_array(items: Iterable[object], kinds: str, what: str,
                game_id: str | None) -> np.ndarray:
    """One flat numeric array of all rows' entries; anything else is a malformed record."""
    try:
        array = np.asarray(list(items))
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{what} must be flat lists of numbers: {exc}", field="search",
                          game_id=game_id) from exc
    if array.ndim != 1 or (array.size and array.dtype.kind not in kinds):
        raise RecordError(f"{what} must be flat lists of numbers, got {array.dtype} "
                          f"with shape {array.shape}", field="search", game_id=game_id)
    return array


def _reject_rows(bad: np.ndarray, fields: list[str], game_id: str | None,
                 message: str) -> None:
    hits = np.flatnonzero(bad)
    if hits.size:
        raise RecordError(f"{message} ({hits.size} row(s))", field=fields[hits[0]],
                          game_id=game_id)


def _reject_entries(bad: np.ndarray, entry_row: np.ndarray, fields: list[str],
                    game_id: str | None, message: str) -> None:
    row_bad = np.zeros(len(fields), dtype=bool)
    row_bad[entry_row[bad]] = True
    _reject_rows(row_bad, fields, game_id, message)
