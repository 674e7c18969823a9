"""Value targets on hand-built outcomes: the rank formula, ties, and the per-seat vector."""
from __future__ import annotations

import numpy as np
import pytest

from playstream.encoders.values import (compute_multi_player_values, compute_value,
                                        value_from_final_ranking, value_from_final_winner)
from playstream.errors import RecordError
from playstream.games.base import Outcome


def outcome(*ranks: int) -> Outcome:
    winner = ranks.index(1) + 1 if ranks.count(1) == 1 else None
    return Outcome(ranks=ranks, winner=winner, termination="test")


def ranking(o: Outcome) -> list[float]:
    return [value_from_final_ranking(o, seat) for seat in range(1, len(o.ranks) + 1)]


def test_compute_value_winner_loser_and_no_winner() -> None:
    assert compute_value(2, 2) == 1.0
    assert compute_value(2, 1) == -1.0
    assert compute_value(2, 3) == -1.0
    assert compute_value(None, 1) == 0.0


def test_value_from_final_winner_treats_every_other_seat_as_loser() -> None:
    o = outcome(3, 1, 2)
    assert [value_from_final_winner(o, s) for s in (1, 2, 3)] == [-1.0, 1.0, -1.0]
    assert [value_from_final_winner(outcome(1, 1), s) for s in (1, 2)] == [0.0, 0.0]


@pytest.mark.parametrize("ranks, expected", [
    ((1, 2), [1.0, -1.0]),
    ((2, 1), [-1.0, 1.0]),
    ((1, 1), [0.0, 0.0]),  # draw
    ((2, 1, 3), [0.0, 1.0, -1.0]),
    ((1, 1, 3), [0.5, 0.5, -1.0]),  # ranks 1 and 2 shared: (1 + 0) / 2
    ((1, 2, 2), [1.0, -0.5, -0.5]),  # ranks 2 and 3 shared: (0 - 1) / 2
    ((1, 1, 1), [0.0, 0.0, 0.0]),
    ((4, 2, 1, 3), [-1.0, 1 / 3, 1.0, -1 / 3]),
    ((1, 1, 3, 4), [2 / 3, 2 / 3, -1 / 3, -1.0]),  # (1 + 1/3) / 2
    ((1, 2, 2, 2), [1.0, -1 / 3, -1 / 3, -1 / 3]),  # (1/3 - 1/3 - 1) / 3
    ((3, 1, 1, 3), [-2 / 3, 2 / 3, 2 / 3, -2 / 3]),  # (-1/3 - 1) / 2
    ((1, 1, 1, 1), [0.0, 0.0, 0.0, 0.0]),
])
def test_rank_values_average_tied_ranks(ranks: tuple[int, ...], expected: list[float]) -> None:
    got = ranking(outcome(*ranks))
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert sum(got) == pytest.approx(0.0, abs=1e-12)


def test_multi_player_values_by_seat_one_per_player() -> None:
    values = compute_multi_player_values(outcome(2, 1, 3), 3)
    assert values.dtype == np.float32 and values.shape == (3,)
    np.testing.assert_array_equal(values, np.array([0.0, 1.0, -1.0], dtype=np.float32))
    np.testing.assert_array_equal(compute_multi_player_values(outcome(1, 1), 2),
                                  np.zeros(2, dtype=np.float32))
    eight = compute_multi_player_values(outcome(*range(1, 9)), 8)
    np.testing.assert_allclose(eight, 1 - 2 * np.arange(8) / 7, rtol=1e-6)
    four = compute_multi_player_values(outcome(1, 1, 3, 4), 4)
    np.testing.assert_allclose(four, [2 / 3, 2 / 3, -1 / 3, -1.0], rtol=1e-6)
    assert four[0] == np.float32(value_from_final_ranking(outcome(1, 1, 3, 4), 1))


def test_player_count_must_match_outcome() -> None:
    with pytest.raises(RecordError, match="ranks 3 seats but the game has 4") as err:
        compute_multi_player_values(outcome(1, 2, 3), 4)
    assert err.value.field == "outcome"


@pytest.mark.parametrize("ranks", [(1, 3), (2, 2), (1, 2, 2, 3), (1, 1, 2), (0, 1), (1,),
                                   (1, 2, 3, 4, 5, 6, 7, 8, 9)])
def test_malformed_rankings_are_refused(ranks: tuple[int, ...]) -> None:
    with pytest.raises(RecordError) as err:
        value_from_final_ranking(Outcome(ranks=ranks, winner=None, termination="x"), 1)
    assert err.value.field == "outcome"


def test_seat_out_of_range_is_refused() -> None:
    for seat in (0, 3):
        with pytest.raises(RecordError, match=f"seat {seat} is not in 1..2") as err:
            value_from_final_ranking(outcome(1, 2), seat)
        assert err.value.field == "perspective"
