"""Value targets: what a finished game was worth to each seat.

Rank values spread linearly from +1 (first) to -1 (last), so a 3-player game gives +1, 0, -1
and a 4-player game +1, +1/3, -1/3, -1. Seats that tie share the mean value of the ranks they
span: a tie must not reward one seat over another, and the values of a game keep summing to 0.
"""
from __future__ import annotations

import numpy as np

from playstream.errors import RecordError
from playstream.games.base import MAX_SEATS, Game, Outcome

def compute_value(winner: int | None, perspective: int) -> float:
    """+1 if ``perspective`` won, -1 if another seat won, 0 when nobody did."""
    if winner is None:
        return 0.0
    return 1.0 if winner == perspective else -1.0


def value_from_final_winner(outcome: Outcome, perspective: int) -> float:
    """Winner-only value: every seat but the winner counts as a loser."""
    _check_seat(outcome, perspective)
    return compute_value(outcome.winner, perspective)


def value_from_final_ranking(outcome: Outcome, perspective: int) -> float:
    """Rank-aware value of seat ``perspective`` (1-based)."""
    _check_seat(outcome, perspective)
    return float(_rank_values(outcome)[perspective - 1])


def compute_multi_player_values(outcome: Outcome, num_players: int) -> np.ndarray:
    """float32 [num_players]: the rank value of each seat."""
    if num_players != len(outcome.ranks):
        raise RecordError(
            f"outcome ranks {len(outcome.ranks)} seats but the game has {num_players} players",
            field="outcome")
    return _rank_values(outcome).astype(np.float32)


def values_from_returns(outcome: Outcome, low: float, high: float) -> np.ndarray:
    """float32 [n]: the game's returns mapped linearly from [low, high] onto [-1, 1]."""
    if outcome.returns is None:
        raise RecordError("the game declares values from returns but the outcome has none",
                          field="returns")
    if not high > low:
        raise RecordError(f"returns range ({low}, {high}) is empty", field="returns")
    returns = np.asarray(outcome.returns, dtype=np.float64)
    if not np.isfinite(returns).all() or (returns < low).any() or (returns > high).any():
        raise RecordError(f"returns {tuple(outcome.returns)} are outside [{low}, {high}]",
                          field="returns")
    return (2.0 * (returns - low) / (high - low) - 1.0).astype(np.float32)


def game_values(game: Game, board_type: str, outcome: Outcome) -> np.ndarray:
    """float32 [n]: each seat's value target, from ranks or from returns as the game
    declares (`Game.value_source`)."""
    if game.value_source == "returns":
        low, high = game.returns_range(board_type)
        return values_from_returns(outcome, low, high)
    return compute_multi_player_values(outcome, len(outcome.ranks))


def _rank_values(outcome: Outcome) -> np.ndarray:
    """float64 [n]: rank values by seat, ties averaged over the ranks they span."""
    ranks = np.asarray(outcome.ranks, dtype=np.int64)
    n = ranks.size
    if not 2 <= n <= MAX_SEATS:
        raise RecordError(f"outcome ranks {n} seats; rank values need 2..{MAX_SEATS} (a "
                          "one-seat game declares its values from returns)", field="outcome")
    # Competition ranking: a seat's rank is 1 + the number of seats ranked strictly better.
    expected = 1 + (ranks[None, :] < ranks[:, None]).sum(axis=1)
    if not np.array_equal(ranks, expected):
        raise RecordError(
            f"outcome ranks {tuple(outcome.ranks)} are not a competition ranking "
            f"(expected {tuple(expected.tolist())})", field="outcome")
    tied = (ranks[None, :] == ranks[:, None]).sum(axis=1)
    # k seats tied at rank r span ranks r..r+k-1; the value is linear in rank, so the mean of
    # their values is the value at the mean rank r + (k-1)/2.
    mean_rank = ranks + (tied - 1) / 2.0
    return 1.0 - 2.0 * (mean_rank - 1.0) / (n - 1)


def _check_seat(outcome: Outcome, perspective: int) -> None:
    if not 1 <= perspective <= len(outcome.ranks):
        raise RecordError(
            f"seat {perspective} is not in 1..{len(outcome.ranks)}", field="perspective")
