"""Rules, geometry and planes of the built-in game connect, on hand-built positions."""
from __future__ import annotations

import numpy as np
import pytest

from playstream.errors import (DatasetError, FeatureVersionError, IllegalMoveError, RecordError,
                               UnknownGameError)
from playstream.games import Game, Outcome, Replay, get_game
from playstream.games.connect import GAME, ConnectState
from playstream.games.connect.rules import makes_line

BOARDS = ("square8", "square19", "hex8", "hexagonal")


def sq(x: int, y: int, size: int = 8) -> int:
    return y * size + x


def hx(q: int, r: int, radius: int = 4) -> int:
    return (r + radius) * (2 * radius + 1) + q + radius


def play_script(board_type: str, num_players: int,
                cells: dict[int, list[int]]) -> tuple[ConnectState, list[int]]:
    """Play each seat's cells in order, whoever the rules say is to move, until the game
    ends or the seat to move has no cell left."""
    state = GAME.new_state(board_type, num_players)
    queues = {seat: list(seat_cells) for seat, seat_cells in cells.items()}
    moves: list[int] = []
    while state.to_move is not None and queues[state.to_move]:
        move = queues[state.to_move].pop(0)
        GAME.apply_move(state, move)
        moves.append(move)
    return state, moves


def random_moves(board_type: str, num_players: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    state = GAME.new_state(board_type, num_players)
    moves: list[int] = []
    while state.to_move is not None:
        legal = GAME.legal_moves(state)
        moves.append(int(legal[rng.integers(len(legal))]))
        GAME.apply_move(state, moves[-1])
    return moves


def no_line_pattern(x: int, y: int) -> int:
    """0/1 colouring of square8 whose runs are at most 2 long in all four line directions."""
    return (x // 2 + y) % 2


# --- registry and geometry -------------------------------------------------------------

def test_registry_returns_connect_game() -> None:
    game = get_game("connect")
    assert game is GAME
    assert isinstance(game, Game)
    assert (game.name, game.version) == ("connect", "1")
    assert game.board_types == BOARDS
    assert game.feature_versions == ("v1", "v2")


@pytest.mark.parametrize("board_type,side,cells", [
    ("square8", 8, 64), ("square19", 19, 361), ("hex8", 9, 61), ("hexagonal", 25, 469)])
def test_geometry_sizes(board_type: str, side: int, cells: int) -> None:
    geometry = GAME.geometry(board_type)
    assert (geometry.height, geometry.width) == (side, side)
    assert geometry.policy_size == side * side
    assert geometry.valid.dtype == bool and int(geometry.valid.sum()) == cells
    assert len(GAME.legal_moves(GAME.new_state(board_type, 2))) == cells


def test_hex_embedding_rows() -> None:
    valid = GAME.geometry("hex8").valid
    # Row 0 is r = -4: q runs over 0..4, i.e. columns 4..8.
    assert valid[0].tolist() == [False] * 4 + [True] * 5
    assert valid[4].all()
    assert valid[8].tolist() == [True] * 5 + [False] * 4
    assert valid.reshape(-1)[hx(0, 0)] and not valid.reshape(-1)[0]


# --- wins and non-wins -----------------------------------------------------------------

SQUARE_FILLER = [sq(0, 7), sq(2, 7), sq(4, 7)]


@pytest.mark.parametrize("line", [
    [sq(0, 0), sq(1, 0), sq(2, 0), sq(3, 0)],  # (1, 0)
    [sq(5, 1), sq(5, 2), sq(5, 3), sq(5, 4)],  # (0, 1)
    [sq(1, 1), sq(2, 2), sq(3, 3), sq(4, 4)],  # (1, 1)
    [sq(0, 3), sq(1, 2), sq(2, 1), sq(3, 0)],  # (1, -1)
    [sq(0, 5), sq(1, 5), sq(3, 5), sq(2, 5)],  # gap filled last: counts both sides
], ids=["horizontal", "vertical", "diagonal", "anti_diagonal", "gap"])
def test_square8_line_wins(line: list[int]) -> None:
    state, moves = play_script("square8", 2, {1: line[:3], 2: SQUARE_FILLER})
    assert state.outcome is None and state.to_move == 1  # k-1 in a row is no win
    GAME.apply_move(state, line[3])
    assert GAME.outcome(state) == Outcome(ranks=(1, 2), winner=1, termination="lines")
    assert state.to_move is None
    assert len(GAME.legal_moves(state)) == 0
    assert GAME.replay("square8", 2, moves + [line[3]]).outcome == state.outcome


@pytest.mark.parametrize("line,wins", [
    ([hx(-1, 0), hx(0, 0), hx(1, 0), hx(2, 0)], True),  # (1, 0)
    ([hx(0, -1), hx(0, 0), hx(0, 1), hx(0, 2)], True),  # (0, 1)
    ([hx(-1, 1), hx(0, 0), hx(1, -1), hx(2, -2)], True),  # (1, -1)
    ([hx(-1, -1), hx(0, 0), hx(1, 1), hx(2, 2)], False),  # (1, 1) is not a hex line
], ids=["q", "r", "q_minus_r", "not_a_line"])
def test_hex8_line_directions(line: list[int], wins: bool) -> None:
    filler = [hx(-4, 4), hx(-2, 4), hx(0, 4)]
    state, _ = play_script("hex8", 2, {1: line, 2: filler})
    if wins:
        assert state.outcome == Outcome(ranks=(1, 2), winner=1, termination="lines")
    else:
        assert state.outcome is None and state.to_move == 2 and state.move_count == 7


def test_square19_needs_five() -> None:
    row = [sq(x, 9, 19) for x in range(5)]
    filler = [sq(x, 0, 19) for x in (0, 2, 4, 6)]
    state, _ = play_script("square19", 2, {1: row[:4], 2: filler})
    assert state.outcome is None  # four in a row on a k=5 board
    GAME.apply_move(state, row[4])
    assert state.outcome == Outcome(ranks=(1, 2), winner=1, termination="lines")


def test_hexagonal_needs_five() -> None:
    row = [hx(q, 0, 12) for q in range(-2, 3)]
    filler = [hx(q, 12, 12) for q in (-12, -10, -8, -6)]
    state, _ = play_script("hexagonal", 2, {1: row[:4], 2: filler})
    assert state.outcome is None
    GAME.apply_move(state, row[4])
    assert state.outcome == Outcome(ranks=(1, 2), winner=1, termination="lines")


def test_four_players_finished_seats_are_skipped() -> None:
    cells = {
        1: [sq(0, 0), sq(1, 0), sq(2, 0), sq(5, 0), sq(7, 3), sq(3, 0)],
        2: [sq(0, 2), sq(1, 2), sq(2, 2), sq(3, 2)],
        3: [sq(0, 4), sq(2, 4), sq(4, 4), sq(6, 4), sq(1, 5)],
        4: [sq(0, 6), sq(1, 6), sq(2, 6), sq(4, 6), sq(3, 6)],  # ends with five in a row
    }
    state, moves = play_script("square8", 4, cells)
    assert state.outcome == Outcome(ranks=(3, 1, 4, 2), winner=2, termination="lines")
    replay = GAME.replay("square8", 4, moves)
    assert replay.movers.tolist() == [1, 2, 3, 4] * 4 + [1, 3, 4, 1]
    assert replay.moves.dtype == np.int64 and replay.movers.dtype == np.int64
    assert replay.outcome == state.outcome


def test_two_player_board_full_is_a_draw() -> None:
    cells = {seat: [sq(x, y) for y in range(8) for x in range(8)
                    if no_line_pattern(x, y) == seat - 1] for seat in (1, 2)}
    state, moves = play_script("square8", 2, cells)
    assert len(moves) == 64
    assert state.outcome == Outcome(ranks=(1, 1), winner=None, termination="board_full")


def test_three_players_board_full_ties_the_rest() -> None:
    line = [sq(0, 0), sq(1, 0), sq(2, 0), sq(3, 0)]
    rest = [(x, y) for y in range(8) for x in range(8) if sq(x, y) not in line]
    cells = {1: line,
             2: [sq(x, y) for x, y in rest if no_line_pattern(x, y) == 0],
             3: [sq(x, y) for x, y in rest if no_line_pattern(x, y) == 1]}
    state, moves = play_script("square8", 3, cells)
    assert len(moves) == 64
    assert state.outcome == Outcome(ranks=(1, 2, 2), winner=1, termination="board_full")
    movers = GAME.replay("square8", 3, moves).movers.tolist()
    assert movers == [1, 2, 3] * 3 + [1] + [2, 3] * 27


# --- illegal input ---------------------------------------------------------------------

WIN = [sq(0, 0), sq(0, 7), sq(1, 0), sq(2, 7), sq(2, 0), sq(4, 7), sq(3, 0)]


@pytest.mark.parametrize("board_type,moves,field,reason", [
    ("square8", [9, 9], "moves[1]", "cell 9 is occupied by seat 1"),
    ("hex8", [hx(0, 0), 0], "moves[1]", "cell 0 (row 0, column 0) is off board"),
    ("hexagonal", [624], "moves[0]", "cell 624 (row 24, column 24) is off board"),
    ("square8", [3, 64], "moves[1]", "move 64 is out of range"),
    ("square8", [-1], "moves[0]", "move -1 is out of range"),
    ("square8", [2.0], "moves[0]", "move 2.0 is out of range: must be an integer in 0..63"),
    ("square8", [True], "moves[0]", "move True is out of range"),
    ("square8", WIN + [20], "moves[7]", "move 20 played after the game is over"),
])
def test_illegal_moves_name_the_move(board_type: str, moves: list, field: str,
                                     reason: str) -> None:
    with pytest.raises(IllegalMoveError) as info:
        GAME.replay(board_type, 2, moves)
    assert info.value.field == field
    assert reason in info.value.message
    assert f"field={field}" in str(info.value)


def test_illegal_move_leaves_state_untouched() -> None:
    state, _ = play_script("square8", 3, {1: [5], 2: [6], 3: []})
    board = state.board.copy()
    with pytest.raises(IllegalMoveError) as info:
        GAME.apply_move(state, 6)
    assert info.value.field == "moves[2]"
    assert (state.board == board).all() and state.to_move == 3 and state.move_count == 2


@pytest.mark.parametrize("num_players", [1, 5, 0, True, "2", 2.0])
def test_bad_num_players(num_players: object) -> None:
    with pytest.raises(RecordError) as info:
        GAME.replay("square8", num_players, [])  # type: ignore[arg-type]
    assert info.value.field == "num_players"
    assert "num_players must be an integer in 2..4" in info.value.message


def test_unknown_board_type() -> None:
    with pytest.raises(UnknownGameError) as info:
        GAME.replay("square9", 2, [0])
    assert info.value.field == "board_type" and "'square9'" in info.value.message
    with pytest.raises(UnknownGameError):
        GAME.geometry("hex")


def test_copy_is_independent() -> None:
    state, _ = play_script("hex8", 2, {1: [hx(0, 0)], 2: []})
    twin = state.copy()
    GAME.apply_move(twin, hx(1, 0))
    assert state.move_count == 1 and state.to_move == 2 and state.board.reshape(-1)[hx(1, 0)] == 0
    assert twin.move_count == 2 and twin.to_move == 1 and twin.board.reshape(-1)[hx(1, 0)] == 2


# --- planes ----------------------------------------------------------------------------

def assert_planes_equal(got, want) -> None:  # type: ignore[no-untyped-def]
    for name in ("per_seat", "shared", "globals"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == np.float32 and b.dtype == np.float32, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    for name in ("per_seat_names", "shared_names", "global_names"):
        assert getattr(got, name) == getattr(want, name)


@pytest.mark.parametrize("board_type,num_players,seed", [
    (board, n, seed) for board in ("square8", "hex8") for n in (2, 3, 4) for seed in (0, 1)
] + [("square19", 3, 0), ("square19", 4, 1), ("hexagonal", 2, 0), ("hexagonal", 4, 2)])
def test_position_planes_match_state_planes(board_type: str, num_players: int,
                                            seed: int) -> None:
    moves = random_moves(board_type, num_players, seed)
    cut = len(moves) // 2  # a truncated replay too: its last position still has a mover
    for moves_used in (moves, moves[:cut]):
        replay = GAME.replay(board_type, num_players, moves_used)
        planes = GAME.position_planes(replay, "v2")
        v1 = GAME.position_planes(replay, "v1")
        state = GAME.new_state(board_type, num_players)
        for t in range(len(moves_used) + 1):
            one = GAME.state_planes(state, "v2")
            assert_planes_equal(planes_at(planes, t), one)
            if t < len(moves_used):
                GAME.apply_move(state, moves_used[t])
        np.testing.assert_array_equal(v1.per_seat, planes.per_seat[:, :, :1])
        np.testing.assert_array_equal(v1.globals, planes.globals)
    assert planes.per_seat.shape == (cut + 1, num_players, 2,
                                     *GAME.geometry(board_type).valid.shape)


def test_threat_planes_on_a_hand_built_square_position() -> None:
    cells = {1: [sq(1, 3), sq(2, 3), sq(3, 3), sq(1, 0), sq(2, 0), sq(4, 0)],
             2: [sq(5, 5), sq(5, 6), sq(5, 7), sq(0, 3), sq(7, 0), sq(7, 2)]}
    state, moves = play_script("square8", 2, cells)
    planes = GAME.position_planes(GAME.replay("square8", 2, moves), "v2")
    threats = planes.per_seat[-1, :, 1].reshape(2, -1)
    assert np.flatnonzero(threats[0]).tolist() == sorted([sq(3, 0), sq(4, 3)])  # (0,3) blocked
    assert np.flatnonzero(threats[1]).tolist() == [sq(5, 4)]  # the board edge closes (5, 8)
    stones = planes.per_seat[-1, :, 0].reshape(2, -1)
    assert np.flatnonzero(stones[0]).tolist() == sorted(cells[1])
    assert np.flatnonzero(stones[1]).tolist() == sorted(cells[2])
    assert_planes_equal(planes_at(planes, -1), GAME.state_planes(state, "v2"))


def planes_at(planes, t: int):  # type: ignore[no-untyped-def]
    end = t + 1 or None
    return type(planes)(planes.per_seat[t:end], planes.shared[t:end], planes.globals[t:end],
                        planes.per_seat_names, planes.shared_names, planes.global_names)


def test_threat_planes_on_a_hand_built_hex_position() -> None:
    cells = {1: [hx(-1, 0), hx(0, 0), hx(1, 0)], 2: [hx(1, 2), hx(2, 1), hx(3, 0)]}
    state, moves = play_script("hex8", 2, cells)
    threats = GAME.state_planes(state, "v2").per_seat[0, :, 1].reshape(2, -1)
    assert np.flatnonzero(threats[0]).tolist() == sorted([hx(-2, 0), hx(2, 0)])
    assert np.flatnonzero(threats[1]).tolist() == sorted([hx(0, 3), hx(4, -1)])


@pytest.mark.parametrize("board_type", BOARDS)
def test_threats_match_the_rules_line_test(board_type: str) -> None:
    """Cell by cell, a threat is exactly a cell where the rules would see a new line."""
    state = GAME.new_state(board_type, 3)
    for move in random_moves(board_type, 3, seed=4):  # stop just before the first line
        after = state.copy()
        GAME.apply_move(after, move)
        if any(after.ranks):
            break
        state = after
    threats = GAME.state_planes(state, "v2").per_seat[0, :, 1]
    expected = np.zeros_like(threats)
    for row, col in zip(*np.nonzero(state.board == 0)):
        for seat in range(1, 4):
            expected[seat - 1, row, col] = makes_line(state.board, state.spec, row, col, seat)
    assert expected.any()
    np.testing.assert_array_equal(threats, expected)


def test_globals_and_shared_planes_of_a_three_player_game() -> None:
    line = [sq(0, 0), sq(1, 0), sq(2, 0), sq(3, 0)]
    cells = {1: line, 2: [sq(0, 7), sq(2, 7), sq(4, 7), sq(6, 7)],
             3: [sq(7, 2), sq(7, 4), sq(7, 6), sq(5, 5), sq(3, 3)]}
    state, moves = play_script("square8", 3, cells)  # seat 1 wins at move 9, 2 and 3 go on
    planes = GAME.position_planes(GAME.replay("square8", 3, moves), "v1")
    assert planes.global_names == ("players_2", "players_3", "players_4", "fill",
                                   "finished_rel0", "finished_rel1", "finished_rel2",
                                   "finished_rel3")
    np.testing.assert_array_equal(planes.globals[9], [0, 1, 0, 9 / 64, 0, 0, 0, 0])  # seat 1
    np.testing.assert_array_equal(planes.globals[10], [0, 1, 0, 10 / 64, 0, 0, 1, 0])  # seat 2
    np.testing.assert_array_equal(planes.globals[11], [0, 1, 0, 11 / 64, 0, 1, 0, 0])  # seat 3
    assert planes.globals.dtype == np.float32
    assert planes.shared_names == ("empty", "on_board")
    assert planes.shared[:, 0].sum(axis=(1, 2)).tolist() == [64 - t for t in range(len(moves) + 1)]
    assert (planes.shared[:, 1] == 1).all()
    assert planes.per_seat.shape[1] == 3  # no slot for a fourth seat
    assert state.outcome is None and state.to_move == 2


def test_finished_game_marks_every_seat_finished() -> None:
    state, moves = play_script("square8", 3, {1: [sq(x, 0) for x in range(4)],
                                              2: [sq(x, 2) for x in range(4)],
                                              3: [sq(0, 4), sq(2, 4), sq(4, 4), sq(6, 4)]})
    assert state.outcome == Outcome(ranks=(1, 2, 3), winner=1, termination="lines")
    planes = GAME.position_planes(GAME.replay("square8", 3, moves), "v1")
    np.testing.assert_array_equal(planes.globals[-1], [0, 1, 0, 11 / 64, 1, 1, 1, 0])
    np.testing.assert_array_equal(planes.globals[-2], [0, 1, 0, 10 / 64, 0, 0, 1, 0])
    assert_planes_equal(planes_at(planes, -1), GAME.state_planes(state, "v1"))


def test_hex_planes_mark_off_board_cells() -> None:
    planes = GAME.position_planes(GAME.replay("hex8", 2, [hx(0, 0)]), "v1")
    on_board = planes.shared[:, 1]
    assert on_board.sum(axis=(1, 2)).tolist() == [61, 61]
    assert planes.shared[:, 0].sum(axis=(1, 2)).tolist() == [61, 60]
    assert on_board[0, 0, 0] == 0 and planes.shared[0, 0, 0, 0] == 0


def test_unknown_feature_version() -> None:
    replay = GAME.replay("square8", 2, [0])
    with pytest.raises(FeatureVersionError) as info:
        GAME.position_planes(replay, "v3")
    assert "'v3'" in info.value.message and info.value.context["feature_version"] == "v3"
    with pytest.raises(FeatureVersionError):
        GAME.state_planes(GAME.new_state("square8", 2), "v0")
    with pytest.raises(FeatureVersionError):
        GAME.derive_per_seat(np.zeros((1, 4, 1, 8, 8), np.float32), "square8", "v1", "v9")


def test_corrupt_replay_is_refused() -> None:
    moves = np.array([0, 1], dtype=np.int64)
    cases = [
        (Replay("square8", 2, moves, np.array([1], dtype=np.int64), None), "movers"),
        (Replay("square8", 2, moves, np.array([1, 3], dtype=np.int64), None), "movers"),
        (Replay("hex8", 2, moves, np.array([1, 2], dtype=np.int64), None), "moves"),
        (Replay("square8", 2, np.array([0, 64]), np.array([1, 2]), None), "moves"),
        (Replay("square8", 2, np.array([5, 5]), np.array([1, 2]), None), "moves"),
    ]
    for replay, field in cases:
        with pytest.raises(RecordError) as info:
            GAME.position_planes(replay, "v1")
        assert info.value.field == field


def test_derive_per_seat_between_versions() -> None:
    moves = random_moves("hex8", 3, seed=3)
    replay = GAME.replay("hex8", 3, moves)
    v1, v2 = (GAME.position_planes(replay, v).per_seat for v in ("v1", "v2"))
    np.testing.assert_array_equal(GAME.derive_per_seat(v1, "hex8", "v1", "v2"), v2)
    np.testing.assert_array_equal(GAME.derive_per_seat(v2, "hex8", "v2", "v1"), v1)
    # Seat order does not matter: relative-to-mover stacks derive the same planes.
    rolled = np.roll(v1, 1, axis=1)
    np.testing.assert_array_equal(GAME.derive_per_seat(rolled, "hex8", "v1", "v2"),
                                  np.roll(v2, 1, axis=1))
    with pytest.raises(DatasetError) as info:
        GAME.derive_per_seat(v1, "square8", "v1", "v2")
    assert info.value.array == "per_seat"
