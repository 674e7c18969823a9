"""Rows of whole games: a hand-built game with exact expected rows, and policy targets."""
from __future__ import annotations

import numpy as np
import pytest

from playstream.encoders.features import encode_game
from playstream.encoders.policy import build_policy_targets
from playstream.encoders.rows import encode_game_rows
from playstream.encoders.versions import ExportSettings
from playstream.errors import ConfigMismatchError, RecordError
from playstream.games.connect import GAME as CONNECT

# square8, 4 in a row: seat 1 fills row 0 columns 0..3 while seat 2 plays row 1; the
# seventh move (index 6) wins for seat 1.
MOVES = [0, 8, 1, 9, 2, 10, 3]
SETTINGS = ExportSettings(board_type="square8", num_players=2, history_length=1,
                          sample_every=3)


def cells(*indices: int) -> np.ndarray:
    out = np.zeros(64, dtype=np.float32)
    out[list(indices)] = 1.0
    return out.reshape(8, 8)


def test_hand_built_game_rows() -> None:
    replay = CONNECT.replay("square8", 2, MOVES)
    assert replay.outcome is not None and replay.outcome.ranks == (1, 2)
    search = [None] * 7
    search[3] = ([9, 20, 4], [0.5, 0.25, 0.25], 0.1)
    search[4] = ([2, 5], [0.5, 0.5], 0.9)  # not a sampled row: must not appear
    batch = encode_game_rows(CONNECT, replay, search, SETTINGS, "g-1")

    assert len(batch) == 3
    np.testing.assert_array_equal(batch.move_number, np.array([0, 3, 6], dtype=np.int32))
    np.testing.assert_array_equal(batch.player, np.array([1, 2, 1], dtype=np.int8))
    np.testing.assert_array_equal(batch.num_players, np.array([2, 2, 2], dtype=np.int8))
    assert batch.game_id.dtype == np.dtype("<U3") and batch.game_id.tolist() == ["g-1"] * 3
    np.testing.assert_array_equal(batch.values, np.array([1, -1, 1], dtype=np.float32))
    np.testing.assert_array_equal(batch.values_mp, np.array([[1, -1]] * 3, np.float32))
    np.testing.assert_array_equal(batch.policy_indptr, [0, 1, 4, 5])
    np.testing.assert_array_equal(batch.policy_indices, [0, 4, 9, 20, 3])
    np.testing.assert_array_equal(batch.policy_values, [1.0, 0.25, 0.5, 0.25, 1.0])
    assert batch.policy_indices.dtype == np.int32 and batch.policy_values.dtype == np.float32

    # Row 1 is move 3, seat 2 to move after 0 (seat 1), 8 (seat 2), 1 (seat 1).
    channels = SETTINGS.dataset_config().channels
    assert batch.features.shape == (3, len(channels), 8, 8) == (3, 12, 8, 8)
    row = batch.features[1]
    np.testing.assert_array_equal(row[channels.index("f0:stones_rel0")], cells(8))
    np.testing.assert_array_equal(row[channels.index("f0:stones_rel1")], cells(0, 1))
    np.testing.assert_array_equal(row[channels.index("f1:stones_rel0")], cells(8))
    np.testing.assert_array_equal(row[channels.index("f1:stones_rel1")], cells(0))
    # Move 6: seat 1 to move with three in a row; cell 3 completes it (cell 4 is not
    # adjacent to the run 0..2), and seat 2's run 8..10 threatens 11.
    last = batch.features[2]
    np.testing.assert_array_equal(last[channels.index("f0:threats_rel0")], cells(3))
    np.testing.assert_array_equal(last[channels.index("f0:threats_rel1")], cells(11))
    # Frame 1 is before move 5: seat 1 already threatens 3, seat 2 (8, 9) nothing yet.
    np.testing.assert_array_equal(last[channels.index("f1:threats_rel0")], cells(3))
    assert not last[channels.index("f1:threats_rel1")].any()
    np.testing.assert_array_equal(
        batch.features, encode_game(CONNECT, replay, "v2", 1, np.array([0, 3, 6])).features)
    np.testing.assert_array_equal(batch.globals[:, 0], [1, 1, 1])  # players_2 one-hot


def test_search_absent_gives_one_hot_on_every_played_move() -> None:
    replay = CONNECT.replay("square8", 2, MOVES)
    batch = encode_game_rows(CONNECT, replay, None, SETTINGS.model_copy(
        update={"sample_every": 1}), "g-2")
    np.testing.assert_array_equal(batch.policy_indptr, np.arange(8))
    np.testing.assert_array_equal(batch.policy_indices, MOVES)
    np.testing.assert_array_equal(batch.policy_values, np.ones(7, dtype=np.float32))
    np.testing.assert_array_equal(batch.player, [1, 2, 1, 2, 1, 2, 1])
    np.testing.assert_array_equal(batch.values, [1, -1, 1, -1, 1, -1, 1])


def test_three_player_values_follow_the_final_ranking() -> None:
    rng = np.random.default_rng(1)
    state = CONNECT.new_state("hex8", 3)
    moves = []
    while state.to_move is not None:
        moves.append(int(rng.choice(CONNECT.legal_moves(state))))
        CONNECT.apply_move(state, moves[-1])
    replay = CONNECT.replay("hex8", 3, moves)
    # Seat 2 completed a line; seats 1 and 3 filled the board and tie over ranks 2 and 3.
    assert replay.outcome.ranks == (2, 1, 2)
    by_seat = np.array([-0.5, 1.0, -0.5], dtype=np.float32)
    settings = ExportSettings(board_type="hex8", num_players=3, sample_every=2)
    batch = encode_game_rows(CONNECT, replay, None, settings, "g-3")
    np.testing.assert_array_equal(batch.move_number, np.arange(0, len(moves), 2))
    np.testing.assert_array_equal(batch.player, replay.movers[::2])
    np.testing.assert_array_equal(batch.values, by_seat[batch.player - 1])
    np.testing.assert_array_equal(batch.values_mp, np.tile(by_seat, (len(batch), 1)))
    # Seat 2 finished with move 55; then seats 3 and 1 alternate, so rows 56..60 are seat 3's.
    assert replay.movers[55:].tolist() == [2, 3, 1, 3, 1, 3]
    assert batch.player[-3:].tolist() == [3, 3, 3]
    assert batch.values[-3:].tolist() == [-0.5, -0.5, -0.5]


def test_unfinished_game_is_refused() -> None:
    replay = CONNECT.replay("square8", 2, MOVES[:5])
    with pytest.raises(RecordError, match="not over after 5 moves") as err:
        encode_game_rows(CONNECT, replay, None, SETTINGS, "g-4")
    assert (err.value.field, err.value.game_id) == ("moves", "g-4")


def test_mismatches_are_refused() -> None:
    replay = CONNECT.replay("square8", 2, MOVES)
    wrong = ExportSettings(board_type="hex8", num_players=2)
    with pytest.raises(ConfigMismatchError, match="does not match the export settings"):
        encode_game_rows(CONNECT, replay, None, wrong, "g-5")
    with pytest.raises(RecordError, match="search has 6 entries for 7 moves") as err:
        encode_game_rows(CONNECT, replay, [None] * 6, SETTINGS, "g-5")
    assert err.value.field == "search"
    with pytest.raises(RecordError, match="1..128 characters") as err:
        encode_game_rows(CONNECT, replay, None, SETTINGS, "")
    assert err.value.field == "game_id"


ACTIONS = CONNECT.num_actions("hex8")  # 9 x 9 grid: 81 actions (legality is the game's)


@pytest.mark.parametrize("stats, message", [
    (([40, 41], [0.5]), "different numbers of indices and probabilities"),
    (([], []), "empty"),
    (([40, 81], [0.5, 0.5]), "not an action in 0..80"),
    (([40, -1], [0.5, 0.5]), "not an action in 0..80"),
    (([40, 41], [1.5, -0.5]), "negative or not finite"),
    (([40, 41], [0.5, float("nan")]), "negative or not finite"),
    (([40, 41], [0.5, 0.4]), "do not sum to 1"),
    (([40, 40], [0.5, 0.5]), "appears twice"),
    (([40, 41.0], [0.5, 0.5]), "policy indices must be flat lists of numbers"),
    (([40, [41]], [0.5, 0.5]), "policy indices must be flat lists of numbers"),
    (([40, 41], [0.5, "0.5"]), "probabilities must be flat lists of numbers"),
])
def test_malformed_search_statistics_name_the_move(stats: tuple, message: str) -> None:
    search = [None, (*stats, 0.0), None]
    with pytest.raises(RecordError, match=message) as err:
        build_policy_targets(np.array([40, 50, 60]), search, np.arange(3), ACTIONS,
                             game_id="g-6")
    # the move with statistics is named; flat-list errors concern the whole game's search
    field = "search" if "flat lists" in message else "search[1]"
    assert (err.value.field, err.value.game_id) == (field, "g-6")


def test_a_move_without_statistics_is_named_as_a_move_not_search() -> None:
    """The one-hot target of move 2 (no statistics) is not an action: the error blames
    moves[2], not a search the record does not have."""
    with pytest.raises(RecordError, match="not an action") as err:
        build_policy_targets(np.array([40, 50, ACTIONS]), [None, None, None], np.arange(3),
                             ACTIONS, game_id="g-7")
    assert err.value.field == "moves[2]"


def test_policy_rounding_is_normalised_and_rows_are_sorted() -> None:
    search = [([60, 41, 42], [0.3335, 0.3335, 0.3335], 0.0), None]
    targets = build_policy_targets(np.array([41, 50]), search, np.array([1, 0]), ACTIONS)
    np.testing.assert_array_equal(targets.indptr, [0, 1, 4])
    np.testing.assert_array_equal(targets.indices, [50, 41, 42, 60])
    np.testing.assert_allclose(targets.values, [1, 1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
