"""Feature planes of connect, for every position of a game at once or for one state.

`position_planes` is the production path: stones for all positions come from one cumulative
sum over one-hot moves, and threats from shifted-array run counts, so a game costs a fixed
number of whole-array operations however long it is. `state_planes` builds the same planes
from a live state; tests hold the two against each other.

Per-seat families: ``stones``, and in v2 ``threats``: the empty on-board cells where one more
stone of that seat would complete a line of k or more. Threats are pure geometry, kept for
finished seats too (whether a seat still moves is in the globals).

Globals: ``players_2..4`` one-hot seat count, ``fill`` (filled share of on-board cells), and
``finished_rel0..3``: whether the seat r places after the seat to move holds a rank (rel0 =
seat to move, zero for r >= n). A seat holds a rank once it completes a line, and every seat
holds one once the game is over, so a finished game's last position (which has no seat to
move) shows all n seats finished whichever seat's view it is taken from.
"""
from __future__ import annotations

import numpy as np

from playstream.errors import DatasetError, FeatureVersionError, RecordError
from playstream.games.base import FeatureSpec, PositionPlanes, Replay
from playstream.games.connect.rules import (MAX_PLAYERS, MIN_PLAYERS, BoardSpec, ConnectState,
                                            board_spec, check_num_players, next_seat)

_FAMILIES: dict[str, tuple[str, ...]] = {"v1": ("stones",), "v2": ("stones", "threats")}
FEATURE_VERSIONS: tuple[str, ...] = tuple(_FAMILIES)
SHARED_NAMES: tuple[str, ...] = ("empty", "on_board")
GLOBAL_NAMES: tuple[str, ...] = (
    *(f"players_{n}" for n in range(MIN_PLAYERS, MAX_PLAYERS + 1)), "fill",
    *(f"finished_rel{r}" for r in range(MAX_PLAYERS)))


def _families(feature_version: str) -> tuple[str, ...]:
    families = _FAMILIES.get(feature_version) if isinstance(feature_version, str) else None
    if families is None:
        raise FeatureVersionError(
            f"connect has no feature version {feature_version!r}; known: "
            f"{', '.join(FEATURE_VERSIONS)}", feature_version=feature_version)
    return families


def feature_spec(board_type: str, feature_version: str) -> FeatureSpec:
    """Every connect plane is binary; ``fill`` is the one non-binary global."""
    families = _families(feature_version)
    geometry = board_spec(board_type).geometry
    binary = frozenset(families + SHARED_NAMES + tuple(n for n in GLOBAL_NAMES if n != "fill"))
    return FeatureSpec(per_seat_names=families, viewed_names=(), shared_names=SHARED_NAMES,
                       global_names=GLOBAL_NAMES, height=geometry.height, width=geometry.width,
                       binary=binary)


def completion_cells(stones: np.ndarray, empty: np.ndarray, spec: BoardSpec) -> np.ndarray:
    """bool [..., H, W]: empty cells where one more stone would give the seat whose
    ``stones`` (bool [..., H, W]) these are a line of k or more.

    Per direction the run of own stones is counted outward from each cell on both sides,
    one step at a time up to k-1, so cost is independent of how many positions or seats are
    stacked in front. The steps read shifted views of one zero-padded copy of the stones
    (no copy per step), and a side stops once no cell's run reaches the step.
    """
    k = spec.k
    height, width = stones.shape[-2:]
    pad = (k - 1) * max((max(abs(dr), abs(dc)) for dr, dc in spec.directions), default=0)
    padded = np.zeros(stones.shape[:-2] + (height + 2 * pad, width + 2 * pad), dtype=bool)
    padded[..., pad:pad + height, pad:pad + width] = stones
    hits = np.zeros(stones.shape, dtype=bool)
    run = np.empty(stones.shape, dtype=bool)
    counted = run.view(np.uint8)  # the same bytes as 0/1 counts: no cast per step
    length = np.empty(stones.shape, dtype=np.uint8)
    for d_row, d_col in spec.directions:
        length.fill(1)
        for sign in (1, -1):
            run.fill(True)
            for step in range(1, k):
                r, c = pad + sign * step * d_row, pad + sign * step * d_col
                # the view is out[..., i, j] = stones[..., i + r - pad, j + c - pad]
                np.logical_and(run, padded[..., r:r + height, c:c + width], out=run)
                if not run.any():
                    break
                np.add(length, counted, out=length)
        hits |= length >= k
    return hits & empty


def _globals(num_players: int, fill: np.ndarray, finished_rel: np.ndarray) -> np.ndarray:
    """float32 [P, G] from fill [P] and finished_rel bool [P, MAX_PLAYERS]."""
    out = np.zeros((len(fill), len(GLOBAL_NAMES)), dtype=np.float32)
    out[:, num_players - MIN_PLAYERS] = 1.0
    out[:, MAX_PLAYERS - MIN_PLAYERS + 1] = fill
    out[:, -MAX_PLAYERS:] = finished_rel
    return out


def _assemble(families: tuple[str, ...], stones: np.ndarray, threats: np.ndarray | None,
              empty: np.ndarray, on_board: np.ndarray, globals_: np.ndarray,
              num_players: int) -> PositionPlanes:
    """Planes of the n seats that play (the rules track MAX_PLAYERS, the planes do not)."""
    per_seat = ([stones[:, :num_players]] if threats is None
                else [stones[:, :num_players], threats[:, :num_players]])
    return PositionPlanes(
        per_seat=np.stack(per_seat, axis=2).astype(np.float32, copy=False),
        shared=np.stack([empty, np.broadcast_to(on_board, empty.shape)],
                        axis=1).astype(np.float32),
        globals=globals_, per_seat_names=families, shared_names=SHARED_NAMES,
        global_names=GLOBAL_NAMES)


def _checked_moves(replay: Replay, spec: BoardSpec) -> tuple[np.ndarray, np.ndarray]:
    """The replay's moves and movers, refused unless they can index the planes safely."""
    moves = np.asarray(replay.moves, dtype=np.int64).reshape(-1)
    movers = np.asarray(replay.movers, dtype=np.int64).reshape(-1)
    if len(moves) != len(movers):
        raise RecordError(f"{len(moves)} moves but {len(movers)} movers", field="movers")
    if len(moves) > spec.cells:
        raise RecordError(f"{len(moves)} moves on a board of {spec.cells} cells", field="moves")
    on_grid = (moves >= 0) & (moves < spec.geometry.policy_size)
    if not on_grid.all() or not spec.geometry.valid.reshape(-1)[moves[on_grid]].all():
        raise RecordError("a move is not an on-board cell", field="moves")
    if len(np.unique(moves)) != len(moves):
        raise RecordError("a cell is played twice", field="moves")
    if ((movers < 1) | (movers > replay.num_players)).any():
        raise RecordError(f"a mover is not a seat of 1..{replay.num_players}", field="movers")
    return moves, movers


def position_planes(replay: Replay, feature_version: str) -> PositionPlanes:
    """Planes for positions 0..T of a replayed game (position t = board before move t)."""
    families = _families(feature_version)
    spec = board_spec(replay.board_type)
    num_players = check_num_players(replay.num_players)
    moves, movers = _checked_moves(replay, spec)
    total = len(moves)
    height, width = spec.geometry.height, spec.geometry.width
    steps = np.arange(total)

    # Only the seats that play (the planes keep no others); 0/1 as uint8, since every cell
    # is placed once, and cast to float32 once, when the planes are assembled.
    placed = np.zeros((total + 1, num_players, height * width), dtype=np.uint8)
    placed[steps + 1, movers - 1, moves] = 1
    stones = np.cumsum(placed, axis=0, dtype=np.uint8).reshape(
        total + 1, num_players, height, width)
    occupied = stones.any(axis=1)
    on_board = spec.geometry.valid
    empty = on_board & ~occupied

    # Move t completes a line exactly when its cell was a completion cell of its mover.
    mover_stones = stones[steps, movers - 1].view(bool)
    completes = completion_cells(mover_stones, empty[:-1], spec).reshape(
        total, height * width)[steps, moves]
    finished_at = np.full(MAX_PLAYERS, total + 1)
    finished_at[movers[completes] - 1] = steps[completes] + 1
    if replay.outcome is not None:
        finished_at = np.minimum(finished_at, total)
    finished = np.arange(total + 1)[:, None] >= finished_at[None, :]  # [T+1, MAX_PLAYERS]

    to_move = np.append(movers, 1)
    if replay.outcome is None and total > 0:
        to_move[total] = next_seat(int(movers[-1]), finished[total, :num_players].tolist())
    rel = np.arange(MAX_PLAYERS)
    seat_index = (to_move[:, None] - 1 + rel[None, :]) % num_players
    finished_rel = finished[np.arange(total + 1)[:, None], seat_index] & (rel < num_players)

    threats = None
    if "threats" in families:
        threats = completion_cells(stones.view(bool), empty[:, None], spec)
    fill = np.arange(total + 1, dtype=np.float32) / spec.cells
    return _assemble(families, stones, threats, empty, on_board,
                     _globals(num_players, fill, finished_rel), num_players)


def state_planes(state: ConnectState, feature_version: str) -> PositionPlanes:
    """The same planes for one state, read straight off its board and ranks."""
    families = _families(feature_version)
    spec = state.spec
    seats = np.arange(1, MAX_PLAYERS + 1)
    stones = state.board[None] == seats[:, None, None]  # [MAX_PLAYERS, H, W]
    empty = state.board == 0
    threats = completion_cells(stones, empty[None], spec)[None] if "threats" in families \
        else None

    view = state.to_move or 1  # a finished game has every seat ranked: any view reads the same
    finished_rel = np.zeros(MAX_PLAYERS, dtype=bool)
    for r in range(state.num_players):
        finished_rel[r] = state.ranks[(view - 1 + r) % state.num_players] > 0
    fill = np.array([np.count_nonzero(state.board > 0) / spec.cells], dtype=np.float32)
    return _assemble(families, stones[None], threats, empty[None], spec.geometry.valid,
                     _globals(state.num_players, fill, finished_rel[None]), state.num_players)


def derive_per_seat(per_seat: np.ndarray, board_type: str, from_version: str,
                    to_version: str) -> np.ndarray:
    """Convert per-seat families [..., seats, S_from, H, W] to [..., seats, S_to, H, W].

    Every family is a function of the stones alone (threats need the empty cells, which are
    the on-board cells without a stone of any seat), so any version converts to any other as
    long as the seats axis holds every seat, as `PositionPlanes.per_seat` does.
    """
    source = _families(from_version)
    target = _families(to_version)
    spec = board_spec(board_type)
    geometry = spec.geometry
    expected = (len(source), geometry.height, geometry.width)
    if per_seat.ndim < 4 or per_seat.shape[-3:] != expected:
        raise DatasetError(
            f"per-seat planes of shape {per_seat.shape} do not end in (seats, {expected[0]}, "
            f"{expected[1]}, {expected[2]}) for {from_version} on {board_type}",
            array="per_seat", check="shape")
    stones = per_seat[..., source.index("stones"), :, :] > 0  # [..., seats, H, W]
    planes = []
    for family in target:
        if family in source:
            planes.append(per_seat[..., source.index(family), :, :])
        else:  # "threats", the one family a version may lack
            empty = geometry.valid & ~stones.any(axis=-3)
            planes.append(completion_cells(stones, empty[..., None, :, :], spec))
    return np.stack(planes, axis=-3).astype(np.float32)
