"""Rules of connect: k in a row on square and hex boards for 2 to 4 seats.

Recorded games must replay identically everywhere, so every rule lives here once and the
planes, the registry facade and the agents all go through it. A move only ever changes the
lines through the placed stone, which is why the line test walks at most k-1 cells each way
from that stone instead of scanning the board.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from playstream.errors import IllegalMoveError, RecordError, UnknownGameError
from playstream.games.base import Outcome, Replay

MIN_PLAYERS = 2
MAX_PLAYERS = 4
EMPTY = 0
OFF_BOARD = -1

# Line directions as steps in board coordinates: (dx, dy) on square boards, (dq, dr) on hex
# boards. Column is x (or q + R) and row is y (or r + R), so a step (a, b) is (d_row=b, d_col=a).
_SQUARE_LINES = ((1, 0), (0, 1), (1, 1), (1, -1))
_HEX_LINES = ((1, 0), (0, 1), (1, -1))


@dataclass(frozen=True)
class BoardGeometry:
    """The H x W grid of a connect board: ``valid`` marks on-board cells, the action of a
    cell is row * W + column, so connect has H * W actions and off-board ones are never
    legal. Connect's own: the pipeline only knows `Game.num_actions`."""

    board_type: str
    height: int
    width: int
    valid: np.ndarray  # bool [H, W]

    @property
    def policy_size(self) -> int:
        return self.height * self.width


@dataclass(frozen=True, eq=False)
class BoardSpec:
    """A board's geometry plus what the rules need: line length k and line directions."""

    geometry: BoardGeometry
    k: int
    directions: tuple[tuple[int, int], ...]  # (d_row, d_col) grid steps, one per line axis
    cells: int  # on-board cells; the board is full after this many moves


def _spec(board_type: str, valid: np.ndarray, k: int,
          lines: tuple[tuple[int, int], ...]) -> BoardSpec:
    valid.setflags(write=False)
    height, width = valid.shape
    geometry = BoardGeometry(board_type=board_type, height=height, width=width, valid=valid)
    return BoardSpec(geometry=geometry, k=k, directions=tuple((b, a) for a, b in lines),
                     cells=int(valid.sum()))


def _square(board_type: str, size: int, k: int) -> BoardSpec:
    return _spec(board_type, np.ones((size, size), dtype=bool), k, _SQUARE_LINES)


def _hex(board_type: str, radius: int, k: int) -> BoardSpec:
    """Axial (q, r) cells with max(|q|, |r|, |q+r|) <= radius, at row r+R, column q+R."""
    r, q = np.indices((2 * radius + 1, 2 * radius + 1)) - radius
    valid = np.maximum(np.maximum(np.abs(q), np.abs(r)), np.abs(q + r)) <= radius
    return _spec(board_type, valid, k, _HEX_LINES)


BOARDS: dict[str, BoardSpec] = {
    spec.geometry.board_type: spec
    for spec in (_square("square8", 8, 4), _square("square19", 19, 5),
                 _hex("hex8", 4, 4), _hex("hexagonal", 12, 5))
}
BOARD_TYPES: tuple[str, ...] = tuple(BOARDS)


def board_spec(board_type: str) -> BoardSpec:
    """The spec of a board type; UnknownGameError naming field ``board_type`` otherwise."""
    spec = BOARDS.get(board_type) if isinstance(board_type, str) else None
    if spec is None:
        raise UnknownGameError(
            f"connect has no board type {board_type!r}; known: {', '.join(BOARD_TYPES)}",
            field="board_type")
    return spec


def check_num_players(num_players: int) -> int:
    """Seat counts come from records, so they are checked before anything is sized by them."""
    if isinstance(num_players, bool) or not isinstance(num_players, (int, np.integer)) \
            or not MIN_PLAYERS <= num_players <= MAX_PLAYERS:
        raise RecordError(
            f"num_players must be an integer in {MIN_PLAYERS}..{MAX_PLAYERS}, "
            f"got {num_players!r}", field="num_players")
    return int(num_players)


@dataclass(slots=True)
class ConnectState:
    """A position in play. ``board`` holds seat numbers (0 empty, -1 off board);
    ``ranks[s]`` is seat s+1's rank, 0 while that seat is still playing."""

    spec: BoardSpec
    num_players: int
    board: np.ndarray  # int8 [H, W]
    to_move: int | None
    ranks: list[int]
    move_count: int
    outcome: Outcome | None

    @property
    def board_type(self) -> str:
        return self.spec.geometry.board_type

    def copy(self) -> ConnectState:
        """An independent state for search: the board and ranks are the only mutable parts."""
        return ConnectState(self.spec, self.num_players, self.board.copy(), self.to_move,
                            list(self.ranks), self.move_count, self.outcome)


def new_state(board_type: str, num_players: int) -> ConnectState:
    spec = board_spec(board_type)
    seats = check_num_players(num_players)
    board = np.where(spec.geometry.valid, EMPTY, OFF_BOARD).astype(np.int8)
    return ConnectState(spec, seats, board, 1, [0] * seats, 0, None)


def legal_moves(state: ConnectState) -> np.ndarray:
    if state.to_move is None:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(state.board.reshape(-1) == EMPTY).astype(np.int64, copy=False)


def next_seat(seat: int, done: Sequence[object]) -> int:
    """The first seat after ``seat`` (cyclically) whose ``done`` entry is falsy.

    ``done[s]`` is truthy once seat s+1 has finished (a rank, or a finished flag); callers
    only ask while some other seat is still playing.
    """
    seats = len(done)
    for step in range(1, seats + 1):
        candidate = (seat - 1 + step) % seats + 1
        if not done[candidate - 1]:
            return candidate
    raise StopIteration  # every seat is done: callers never ask then


def makes_line(board: np.ndarray, spec: BoardSpec, row: int, col: int, seat: int) -> bool:
    """Whether ``seat`` has k or more stones in a row through (row, col), counting that cell
    as the seat's; only the at most k-1 cells each way along each direction are read."""
    height, width = board.shape
    k = spec.k
    cell = board.item  # a Python int per read: numpy scalar indexing dominates a replay
    for d_row, d_col in spec.directions:
        length = 1
        for sign in (1, -1):
            r, c = row + sign * d_row, col + sign * d_col
            while length < k and 0 <= r < height and 0 <= c < width and cell(r, c) == seat:
                length += 1
                r += sign * d_row
                c += sign * d_col
        if length >= k:
            return True
    return False


def _cell_index(move: object, spec: BoardSpec, index: int) -> int:
    """The move as a policy index inside the grid (off-board cells are checked later)."""
    size = spec.geometry.policy_size
    try:
        cell = -1 if isinstance(move, bool) else operator.index(move)  # type: ignore[arg-type]
    except TypeError:
        cell = -1
    if not 0 <= cell < size:
        raise IllegalMoveError(f"move {move!r} is out of range: must be an integer in "
                               f"0..{size - 1}", field=_move_field(index))
    return cell


def _move_field(index: int) -> str:
    return f"moves[{index}]"


def apply_move(state: ConnectState, move: int) -> None:
    """Place the mover's stone; IllegalMoveError names ``moves[i]``, i = the move's index."""
    seat = state.to_move
    if seat is None:
        raise IllegalMoveError(f"move {move!r} played after the game is over",
                               field=_move_field(state.move_count))
    spec = state.spec
    cell = _cell_index(move, spec, state.move_count)
    row, col = divmod(cell, spec.geometry.width)
    occupant = state.board.item(row, col)
    if occupant == OFF_BOARD:
        raise IllegalMoveError(f"cell {cell} (row {row}, column {col}) is off board",
                               field=_move_field(state.move_count))
    if occupant != EMPTY:
        raise IllegalMoveError(f"cell {cell} is occupied by seat {occupant}",
                               field=_move_field(state.move_count))

    state.board[row, col] = seat
    state.move_count += 1
    ranks = state.ranks
    if makes_line(state.board, spec, row, col, seat):
        ranks[seat - 1] = 1 + sum(1 for rank in ranks if rank)
        playing = _playing(ranks)
        if len(playing) < 2:
            for s in playing:
                ranks[s - 1] = state.num_players
            _finish(state, "lines")
            return
    if state.move_count == spec.cells:
        playing = _playing(ranks)
        for s in playing:
            ranks[s - 1] = state.num_players - len(playing) + 1
        _finish(state, "board_full")
    else:
        state.to_move = next_seat(seat, ranks)


def _playing(ranks: list[int]) -> list[int]:
    return [seat for seat, rank in enumerate(ranks, start=1) if not rank]


def _finish(state: ConnectState, termination: str) -> None:
    ranks = tuple(state.ranks)
    winner = ranks.index(1) + 1 if ranks.count(1) == 1 else None
    state.outcome = Outcome(ranks=ranks, winner=winner, termination=termination)
    state.to_move = None


def replay(board_type: str, num_players: int, moves: Sequence[int]) -> Replay:
    """Replay a move list; its length is bounded because every move fills a cell and moves
    after the end are refused."""
    state = new_state(board_type, num_players)
    movers: list[int] = []
    for move in moves:
        seat = state.to_move
        apply_move(state, move)  # refuses moves after the end, so seat was a seat
        movers.append(cast(int, seat))
    return Replay(board_type=state.board_type, num_players=state.num_players,
                  moves=np.asarray(moves, dtype=np.int64).reshape(-1),
                  movers=np.asarray(movers, dtype=np.int64), outcome=state.outcome)
