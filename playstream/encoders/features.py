"""Feature tensors for training rows, for any game that implements the `Game` protocol.

A row is the position before one move, seen by the seat to move: per-seat planes are rotated
so that rel0 is the mover, rel1 the next seat, and so on, in the current frame and in every
history frame alike (the network never has to know which absolute seat it plays). History
frames are real plies: frame f of the row for move t is the position before move t - f.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from playstream.dataset.schema import SEATS
from playstream.errors import DatasetError, FeatureVersionError, RecordError
from playstream.games.base import Game, PositionPlanes, Replay

MAX_HISTORY_LENGTH = 8
"""Most history frames a row may carry; bounds a row's size at 9 frames."""


@dataclass(frozen=True)
class FeatureLayout:
    """What a feature version of a game is made of; channel names follow from it."""

    per_seat_names: tuple[str, ...]
    shared_names: tuple[str, ...]
    global_names: tuple[str, ...]
    history_length: int

    @property
    def channels(self) -> tuple[str, ...]:
        return channel_names(self.per_seat_names, self.shared_names, self.history_length)


@dataclass(frozen=True)
class EncodedFeatures:
    """Rows of features with the names that say what each channel and global is."""

    features: np.ndarray  # float32 [R, C, H, W]
    globals: np.ndarray  # float32 [R, G]
    channels: tuple[str, ...]
    global_names: tuple[str, ...]


def channel_names(per_seat_names: Sequence[str], shared_names: Sequence[str],
                  history_length: int) -> tuple[str, ...]:
    """Names in channel order: per frame, each per-seat family as rel0..rel3, then shared."""
    names: list[str] = []
    for frame in range(history_length + 1):
        names += [f"f{frame}:{family}_rel{rel}" for family in per_seat_names
                  for rel in range(SEATS)]
        names += [f"f{frame}:{name}" for name in shared_names]
    return tuple(names)


def feature_layout(game: Game, board_type: str, num_players: int, feature_version: str,
                   history_length: int) -> FeatureLayout:
    """The layout `encode_game` produces, read from the planes of a fresh game."""
    check_feature_request(game, feature_version, history_length)
    planes = game.state_planes(game.new_state(board_type, num_players), feature_version)
    return FeatureLayout(tuple(planes.per_seat_names), tuple(planes.shared_names),
                         tuple(planes.global_names), history_length)


def check_feature_request(game: Game, feature_version: str, history_length: int) -> None:
    """FeatureVersionError unless the game has this version and the history is in range."""
    if feature_version not in game.feature_versions:
        raise FeatureVersionError(
            f"unknown feature version {feature_version!r} for game {game.name!r}; "
            f"known: {', '.join(game.feature_versions)}", feature_version=feature_version)
    if not 0 <= history_length <= MAX_HISTORY_LENGTH:
        raise FeatureVersionError(
            f"history_length {history_length} is not in 0..{MAX_HISTORY_LENGTH}",
            history_length=history_length)


def encode_game(game: Game, replay: Replay, feature_version: str, history_length: int,
                rows: np.ndarray | None = None) -> EncodedFeatures:
    """Features of the positions before the moves ``rows`` (default: every move).

    The game's planes are computed once for the whole game and the rows gathered from them,
    so a game costs one incremental pass however many rows it yields.
    """
    check_feature_request(game, feature_version, history_length)
    num_moves = len(replay.moves)
    if rows is None:
        rows = np.arange(num_moves, dtype=np.int64)
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise DatasetError(f"rows must be a 1-D integer array, got {rows.dtype} {rows.shape}",
                           array="rows", check="shape")
    outside = np.flatnonzero((rows < 0) | (rows >= num_moves))
    if outside.size:
        raise DatasetError(f"row {int(rows[outside[0]])} is not a move of this "
                           f"{num_moves}-move game", array="rows", check="range",
                           row=int(outside[0]))
    rows = rows.astype(np.int64)
    planes = game.position_planes(replay, feature_version)
    return _assemble(planes, rows, replay.movers[rows], replay.num_players, history_length)


def encode_state_with_history(game: Game, state: Any, history: Sequence[Any],
                              feature_version: str, history_length: int, *,
                              num_players: int) -> EncodedFeatures:
    """One row (R = 1) for ``state``, with ``history`` the earlier states, newest first.

    The single-state path for inference and the reference `encode_game` must match; states
    beyond ``history_length`` are not encoded.
    """
    check_feature_request(game, feature_version, history_length)
    if state.to_move is None:
        raise RecordError("the game is over: there is no seat to move to encode for",
                          field="state")
    chronological = [state, *history[:history_length]][::-1]
    frames = [game.state_planes(s, feature_version) for s in chronological]
    first = frames[0]
    planes = PositionPlanes(
        per_seat=np.concatenate([p.per_seat for p in frames]),
        shared=np.concatenate([p.shared for p in frames]),
        globals=np.concatenate([p.globals for p in frames]),
        per_seat_names=first.per_seat_names, shared_names=first.shared_names,
        global_names=first.global_names)
    return _assemble(planes, np.array([len(frames) - 1]), np.array([state.to_move]),
                     num_players, history_length)


def _assemble(planes: PositionPlanes, positions: np.ndarray, movers: np.ndarray,
              num_players: int, history_length: int) -> EncodedFeatures:
    """Gather rows from per-position planes: frame f of row i is position positions[i] - f,
    per-seat planes rotated to the row's mover, zeros before the first position."""
    _check_planes(planes)
    layout = FeatureLayout(tuple(planes.per_seat_names), tuple(planes.shared_names),
                           tuple(planes.global_names), history_length)
    num_rows = positions.size
    seats, families = planes.per_seat.shape[1], planes.per_seat.shape[2]
    height, width = planes.per_seat.shape[-2:]
    seat_channels = seats * families
    frame_channels = seat_channels + len(layout.shared_names)
    features = np.zeros((num_rows, frame_channels * (history_length + 1), height, width),
                        dtype=np.float32)
    # Absolute seat index (0-based) of rel seat r for each row; rel seats >= n stay zero.
    seat_of = (movers[:, None] - 1 + np.arange(num_players)[None, :]) % num_players
    family = np.arange(families)[None, :, None]
    for frame in range(history_length + 1):
        position = positions - frame
        live = np.flatnonzero(position >= 0)
        base = frame * frame_channels
        # Splitting the channel axis of a slice is always a view, so writes land in features.
        block = features[:, base:base + seat_channels].reshape(
            num_rows, families, seats, height, width)
        block[live, :, :num_players] = planes.per_seat[
            position[live, None, None], seat_of[live, None, :], family]
        features[live, base + seat_channels:base + frame_channels] = \
            planes.shared[position[live]]
    return EncodedFeatures(features=features,
                           globals=planes.globals[positions].astype(np.float32, copy=False),
                           channels=layout.channels, global_names=layout.global_names)


def _check_planes(planes: PositionPlanes) -> None:
    """A game plugin's planes must match the names it declares, or channels would lie."""
    positions = planes.per_seat.shape[0]
    height, width = planes.per_seat.shape[-2:]
    expected = {
        "per_seat": (positions, SEATS, len(planes.per_seat_names), height, width),
        "shared": (positions, len(planes.shared_names), height, width),
        "globals": (positions, len(planes.global_names)),
    }
    for name, shape in expected.items():
        got = getattr(planes, name).shape
        if got != shape:
            raise DatasetError(f"game planes {name} have shape {got}, expected {shape}",
                               array=name, check="shape")
