"""Feature encoding: hand-built history and seat rotation, and the vectorised whole-game path
against the single-state reference on random connect games."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pytest

from playstream.encoders.features import (channel_names, encode_game,
                                          encode_state_with_history, feature_layout)
from playstream.errors import DatasetError, FeatureVersionError, RecordError
from playstream.games.base import (FeatureSpec, Game, GameDefaults, Outcome, PositionPlanes,
                                   Replay)
from playstream.games.connect import GAME as CONNECT
from playstream.games.symmetry import Symmetries

# A 2 x 3 grid whose bottom-right cell is off the board: cells 0 1 2 / 3 4 (5 is off board).
VALID = np.array([[True, True, True], [True, True, False]])


@dataclass
class TinyState:
    num_players: int
    board: np.ndarray = field(default_factory=lambda: np.where(VALID, 0, -1))
    to_move: int | None = 1
    moves: int = 0


class TinyGame(GameDefaults):
    """Fill the five cells in turn; the game just ends when the board is full. Its planes
    are stones per seat (v1) plus ``blocked`` (v2: a stone whose right neighbour is
    occupied), empty and on_board shared, and one global (the share of cells filled)."""

    name = "tiny"
    version = "1"
    board_types = ("tiny",)
    feature_versions = ("v1", "v2")

    def num_actions(self, board_type: str) -> int:
        return VALID.size

    def player_counts(self, board_type: str) -> tuple[int, ...]:
        return (2, 3, 4)

    def feature_spec(self, board_type: str, feature_version: str) -> FeatureSpec:
        families = ("stones",) if feature_version == "v1" else ("stones", "blocked")
        return FeatureSpec(families, (), ("empty", "on_board"), ("fill",), 2, 3,
                           frozenset(families))

    def new_state(self, board_type: str, num_players: int) -> TinyState:
        return TinyState(num_players)

    def legal_moves(self, state: TinyState) -> np.ndarray:
        return np.flatnonzero(state.board.ravel() == 0)

    def apply_move(self, state: TinyState, move: int) -> None:
        assert state.to_move is not None and state.board.flat[move] == 0
        state.board.flat[move] = state.to_move
        state.moves += 1
        full = state.moves == VALID.sum()
        state.to_move = None if full else state.to_move % state.num_players + 1

    def outcome(self, state: TinyState) -> Outcome | None:
        return None

    def replay(self, board_type: str, num_players: int, moves: Sequence[int]) -> Replay:
        state = self.new_state(board_type, num_players)
        movers = []
        for move in moves:
            movers.append(state.to_move)
            self.apply_move(state, move)
        return Replay(board_type, num_players, np.asarray(moves, dtype=np.int64),
                      np.asarray(movers, dtype=np.int64), None)

    def position_planes(self, replay: Replay, feature_version: str) -> PositionPlanes:
        state = self.new_state(replay.board_type, replay.num_players)
        planes = [self.state_planes(state, feature_version)]
        for move in replay.moves:
            self.apply_move(state, int(move))
            planes.append(self.state_planes(state, feature_version))
        return PositionPlanes(np.concatenate([p.per_seat for p in planes]),
                              np.concatenate([p.shared for p in planes]),
                              np.concatenate([p.globals for p in planes]),
                              planes[0].per_seat_names, planes[0].shared_names,
                              planes[0].global_names)

    def state_planes(self, state: TinyState, feature_version: str) -> PositionPlanes:
        seats = np.arange(1, state.num_players + 1)
        stones = (state.board[None] == seats[:, None, None]).astype(np.float32)
        per_seat = stones[:, None]
        names: tuple[str, ...] = ("stones",)
        if feature_version == "v2":
            per_seat = self.derive_per_seat(per_seat, "tiny", "v1", "v2")
            names = ("stones", "blocked")
        shared = np.stack([state.board == 0, VALID]).astype(np.float32)
        fill = np.array([[state.moves / VALID.sum()]], dtype=np.float32)
        return PositionPlanes(per_seat[None], shared[None], fill, names,
                              ("empty", "on_board"), ("fill",))

    def derive_per_seat(self, per_seat: np.ndarray, board_type: str, from_version: str,
                        to_version: str) -> np.ndarray:
        if (from_version, to_version) != ("v1", "v2"):
            raise FeatureVersionError(f"tiny cannot derive {to_version} from {from_version}")
        stones = per_seat[..., 0, :, :]
        occupied = stones.sum(axis=-3, keepdims=True) > 0
        right_occupied = np.zeros_like(occupied)
        right_occupied[..., :-1] = occupied[..., 1:]
        blocked = (stones > 0) & right_occupied
        return np.stack([stones, blocked.astype(np.float32)], axis=-3)

    def symmetries(self, board_type: str) -> Symmetries:
        return Symmetries.identity(VALID.size, VALID.size)  # "blocked" has a direction


TINY = TinyGame()


def plane(*cells: int) -> np.ndarray:
    out = np.zeros(6, dtype=np.float32)
    out[list(cells)] = 1.0
    return out.reshape(2, 3)


def channel(encoded, row: int, name: str) -> np.ndarray:
    return encoded.features[row, encoded.channels.index(name)]


def test_tiny_game_implements_the_protocol() -> None:
    assert isinstance(TINY, Game)


def test_channel_names_order() -> None:
    names = channel_names(("stones", "threats"), ("empty", "on_board"), 1, 4)
    assert names[:10] == ("f0:stones_rel0", "f0:stones_rel1", "f0:stones_rel2",
                          "f0:stones_rel3", "f0:threats_rel0", "f0:threats_rel1",
                          "f0:threats_rel2", "f0:threats_rel3", "f0:empty", "f0:on_board")
    assert names[10:] == tuple(n.replace("f0:", "f1:") for n in names[:10])


def test_three_players_history_and_rotation_by_hand() -> None:
    # Seats 1, 2, 3, 1, 2 play cells 0, 1, 2, 3, 4 (the last move fills the board).
    replay = TINY.replay("tiny", 3, [0, 1, 2, 3, 4])
    encoded = encode_game(TINY, replay, "v1", 5)
    assert encoded.features.shape == (5, 6 * 5, 2, 3)  # 3 seat planes + 2 shared per frame
    assert encoded.channels == channel_names(("stones",), ("empty", "on_board"), 5, 3)

    # Move 4: seat 2 to move, after seat 1 played 0 and 3, seat 2 played 1, seat 3 played 2.
    row = 4
    assert replay.movers[row] == 2
    expected_frames = [  # rel0 (seat 2), rel1 (seat 3), rel2 (seat 1), empty
        (plane(1), plane(2), plane(0, 3), plane(4)),   # before move 4
        (plane(1), plane(2), plane(0), plane(3, 4)),   # before move 3
        (plane(1), plane(), plane(0), plane(2, 3, 4)),  # before move 2
        (plane(), plane(), plane(0), plane(1, 2, 3, 4)),  # before move 1
        (plane(), plane(), plane(), plane(0, 1, 2, 3, 4)),  # before move 0
    ]
    assert "f0:stones_rel3" not in encoded.channels  # no empty seat slots
    for frame, planes in enumerate(expected_frames):
        names = [f"f{frame}:stones_rel{r}" for r in range(3)] + [f"f{frame}:empty"]
        for name, want in zip(names, planes):
            np.testing.assert_array_equal(channel(encoded, row, name), want, err_msg=name)
        np.testing.assert_array_equal(channel(encoded, row, f"f{frame}:on_board"), VALID)
    # Frame 5 would be before move -1: all zeros, shared planes included.
    assert not encoded.features[row, encoded.channels.index("f5:stones_rel0"):].any()

    # Move 3: seat 1 to move, so rel0 is seat 1, rel1 seat 2, rel2 seat 3.
    np.testing.assert_array_equal(channel(encoded, 3, "f0:stones_rel0"), plane(0))
    np.testing.assert_array_equal(channel(encoded, 3, "f0:stones_rel1"), plane(1))
    np.testing.assert_array_equal(channel(encoded, 3, "f0:stones_rel2"), plane(2))
    np.testing.assert_array_equal(channel(encoded, 3, "f1:stones_rel2"), plane())
    # Move 0: only the empty-board frame exists.
    assert not encoded.features[0, 5:].any()
    np.testing.assert_array_equal(channel(encoded, 0, "f0:empty"), VALID)
    np.testing.assert_allclose(encoded.globals[:, 0], np.arange(5) / 5)
    assert encoded.global_names == ("fill",)


def test_two_players_have_two_seat_slots() -> None:
    replay = TINY.replay("tiny", 2, [4, 0, 1])
    encoded = encode_game(TINY, replay, "v2", 1)
    # Move 2: seat 1 to move; rel0 = seat 1 (cell 4), rel1 = seat 2 (cell 0).
    np.testing.assert_array_equal(channel(encoded, 2, "f0:stones_rel0"), plane(4))
    np.testing.assert_array_equal(channel(encoded, 2, "f0:stones_rel1"), plane(0))
    # Move 1: seat 2 to move; history frame 1 (before move 0) is the empty board.
    np.testing.assert_array_equal(channel(encoded, 1, "f0:stones_rel0"), plane())
    np.testing.assert_array_equal(channel(encoded, 1, "f0:stones_rel1"), plane(4))
    assert encoded.channels[:6] == ("f0:stones_rel0", "f0:stones_rel1", "f0:blocked_rel0",
                                    "f0:blocked_rel1", "f0:empty", "f0:on_board")


def test_rows_select_without_changing_history() -> None:
    replay = TINY.replay("tiny", 3, [0, 1, 2, 3, 4])
    full = encode_game(TINY, replay, "v2", 3)
    some = encode_game(TINY, replay, "v2", 3, rows=np.array([4, 2]))
    np.testing.assert_array_equal(some.features, full.features[[4, 2]])
    np.testing.assert_array_equal(some.globals, full.globals[[4, 2]])
    empty = encode_game(TINY, replay, "v2", 3, rows=np.array([], dtype=np.int64))
    assert empty.features.shape == (0, full.features.shape[1], 2, 3)


def test_bad_requests_are_refused() -> None:
    replay = TINY.replay("tiny", 2, [0, 1])
    with pytest.raises(DatasetError, match="row 2 is not a move of this 2-move game") as err:
        encode_game(TINY, replay, "v1", 0, rows=np.array([0, 2]))
    assert (err.value.array, err.value.check, err.value.row) == ("rows", "range", 1)
    with pytest.raises(DatasetError, match="1-D integer"):
        encode_game(TINY, replay, "v1", 0, rows=np.array([0.0]))
    with pytest.raises(FeatureVersionError, match="unknown feature version 'v9'.*v1, v2"):
        encode_game(TINY, replay, "v9", 0)
    with pytest.raises(FeatureVersionError, match="history_length 9 is not in 0..8"):
        encode_game(TINY, replay, "v1", 9)
    state = TINY.new_state("tiny", 2)
    for move in range(5):
        TINY.apply_move(state, move)
    with pytest.raises(RecordError, match="no seat to move") as err:
        encode_state_with_history(TINY, state, [], "v1", 0, num_players=2)
    assert err.value.field == "state"


def test_planes_that_contradict_their_names_are_refused() -> None:
    class Liar(TinyGame):
        def position_planes(self, replay: Replay, feature_version: str) -> PositionPlanes:
            planes = super().position_planes(replay, feature_version)
            return PositionPlanes(planes.per_seat, planes.shared, planes.globals,
                                  ("stones", "extra"), planes.shared_names, planes.global_names)

    with pytest.raises(DatasetError, match="per_seat have shape") as err:
        encode_game(Liar(), TINY.replay("tiny", 2, [0]), "v1", 0)
    assert err.value.array == "per_seat"


def test_layout_matches_encoded_channels() -> None:
    replay = CONNECT.replay("hex8", 3, [40, 41])
    layout = feature_layout(CONNECT, "hex8", 3, "v2", 2)
    encoded = encode_game(CONNECT, replay, "v2", 2)
    assert layout.channels == encoded.channels
    assert layout.global_names == encoded.global_names
    assert encoded.channels[:7] == ("f0:stones_rel0", "f0:stones_rel1", "f0:stones_rel2",
                                    "f0:threats_rel0", "f0:threats_rel1", "f0:threats_rel2",
                                    "f0:empty")
    assert len(encoded.channels) == 3 * 8
    assert layout.plane_shape == (24, 9, 9) and all(layout.binary_channels)


def random_connect_game(rng: np.random.Generator, board_type: str, num_players: int,
                        max_moves: int) -> tuple[Replay, list]:
    """A random game (cut at ``max_moves``) and its states before each move."""
    state = CONNECT.new_state(board_type, num_players)
    states, moves = [], []
    while state.to_move is not None and len(moves) < max_moves:
        states.append(state.copy())
        move = int(rng.choice(CONNECT.legal_moves(state)))
        CONNECT.apply_move(state, move)
        moves.append(move)
    return CONNECT.replay(board_type, num_players, moves), states


@pytest.mark.parametrize("board_type", CONNECT.board_types)
@pytest.mark.parametrize("num_players", [2, 3, 4])
def test_encode_game_equals_single_state_reference(board_type: str, num_players: int) -> None:
    rng = np.random.default_rng([num_players, len(board_type)])
    # Small boards play to the end (ranks, skipped seats); big ones are cut to bound the
    # reference path's cost.
    max_moves = 400 if board_type in ("square8", "hex8") else 40
    replay, states = random_connect_game(rng, board_type, num_players, max_moves)
    for history_length in range(4):
        encoded = encode_game(CONNECT, replay, "v2", history_length)
        for t, state in enumerate(states):
            single = encode_state_with_history(CONNECT, state, states[:t][::-1], "v2",
                                               history_length, num_players=num_players)
            assert single.channels == encoded.channels
            np.testing.assert_array_equal(single.features[0], encoded.features[t],
                                          err_msg=f"move {t}, history {history_length}")
            np.testing.assert_array_equal(single.globals[0], encoded.globals[t])


def test_states_beyond_the_history_length_are_ignored() -> None:
    replay, states = random_connect_game(np.random.default_rng(3), "square8", 2, 10)
    history = states[:9][::-1]
    short = encode_state_with_history(CONNECT, states[9], history[:2], "v1", 2, num_players=2)
    long = encode_state_with_history(CONNECT, states[9], history, "v1", 2, num_players=2)
    np.testing.assert_array_equal(short.features, long.features)
    np.testing.assert_array_equal(short.features[0], encode_game(CONNECT, replay, "v1", 2)
                                  .features[9])
