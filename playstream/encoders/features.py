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

from playstream.errors import DatasetError, FeatureVersionError, RecordError
from playstream.games.base import CHANCE, Game, PositionPlanes, Replay

MAX_HISTORY_LENGTH = 8
"""Most history frames a row may carry; bounds a row's size at 9 frames."""


@dataclass(frozen=True)
class FeatureLayout:
    """What a feature version of a game is made of for n players; channel names follow."""

    per_seat_names: tuple[str, ...]
    shared_names: tuple[str, ...]
    global_names: tuple[str, ...]
    history_length: int
    num_players: int = 2
    viewed_names: tuple[str, ...] = ()
    binary_names: frozenset[str] = frozenset()
    height: int = 1
    width: int = 1

    @property
    def channels(self) -> tuple[str, ...]:
        return channel_names(self.per_seat_names, self.shared_names, self.history_length,
                             self.num_players, self.viewed_names)

    @property
    def binary_channels(self) -> tuple[bool, ...]:
        """Per channel: whether its values are always 0 or 1 (history frames before the
        first position are zeros, so a binary family stays binary there)."""
        per_frame = ([f in self.binary_names for f in self.per_seat_names
                      for _ in range(self.num_players)]
                     + [v in self.binary_names for v in self.viewed_names]
                     + [q in self.binary_names for q in self.shared_names])
        return tuple(per_frame * (self.history_length + 1))

    @property
    def plane_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one row's features."""
        return (len(self.channels), self.height, self.width)


@dataclass(frozen=True)
class EncodedFeatures:
    """Rows of features with the names that say what each channel and global is."""

    features: np.ndarray  # float32 [R, C, H, W]
    globals: np.ndarray  # float32 [R, G]
    channels: tuple[str, ...]
    global_names: tuple[str, ...]


def channel_names(per_seat_names: Sequence[str], shared_names: Sequence[str],
                  history_length: int, num_players: int,
                  viewed_names: Sequence[str] = ()) -> tuple[str, ...]:
    """Names in channel order: per frame, each per-seat family as rel0..rel{n-1}, then the
    mover-view planes, then the shared ones."""
    names: list[str] = []
    for frame in range(history_length + 1):
        names += [f"f{frame}:{family}_rel{rel}" for family in per_seat_names
                  for rel in range(num_players)]
        names += [f"f{frame}:{name}" for name in (*viewed_names, *shared_names)]
    return tuple(names)


def feature_layout(game: Game, board_type: str, num_players: int, feature_version: str,
                   history_length: int) -> FeatureLayout:
    """The layout `encode_game` produces, as the game declares it."""
    check_feature_request(game, feature_version, history_length)
    spec = game.feature_spec(board_type, feature_version)
    return FeatureLayout(tuple(spec.per_seat_names), tuple(spec.shared_names),
                         tuple(spec.global_names), history_length, num_players,
                         tuple(spec.viewed_names), frozenset(spec.binary), spec.height,
                         spec.width)


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
    chance = np.flatnonzero(replay.movers[rows] == CHANCE)
    if chance.size:
        raise DatasetError(f"row {int(rows[chance[0]])} is a chance move: it has no seat to "
                           "encode for", array="rows", check="chance", row=int(chance[0]))
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
    if state.to_move is None or state.to_move == CHANCE:
        raise RecordError("no seat to move to encode for (the game is over or at a chance "
                          "node)", field="state")
    chronological = [state, *history[:history_length]][::-1]
    frames = [game.state_planes(s, feature_version) for s in chronological]
    first = frames[0]
    planes = PositionPlanes(
        per_seat=np.concatenate([p.per_seat for p in frames]),
        shared=np.concatenate([p.shared for p in frames]),
        globals=np.concatenate([p.globals for p in frames]),
        per_seat_names=first.per_seat_names, shared_names=first.shared_names,
        global_names=first.global_names,
        viewed=None if first.viewed is None else np.concatenate([p.viewed for p in frames]),
        viewed_names=first.viewed_names)
    return _assemble(planes, np.array([len(frames) - 1]), np.array([state.to_move]),
                     num_players, history_length)


def _assemble(planes: PositionPlanes, positions: np.ndarray, movers: np.ndarray,
              num_players: int, history_length: int) -> EncodedFeatures:
    """Gather rows from per-position planes: frame f of row i is position positions[i] - f,
    per-seat planes rotated to the row's mover, mover-view planes seen by the row's mover,
    zeros before the first position."""
    _check_planes(planes, num_players)
    layout = FeatureLayout(tuple(planes.per_seat_names), tuple(planes.shared_names),
                           tuple(planes.global_names), history_length, num_players,
                           tuple(planes.viewed_names))
    num_rows = positions.size
    families = planes.per_seat.shape[2]
    height, width = planes.shared.shape[-2:]
    seat_channels = num_players * families
    viewed_channels = len(planes.viewed_names)
    frame_channels = seat_channels + viewed_channels + len(layout.shared_names)
    features = np.zeros((num_rows, frame_channels * (history_length + 1), height, width),
                        dtype=np.float32)
    # Absolute seat index (0-based) of rel seat r for each row.
    seat_of = (movers[:, None] - 1 + np.arange(num_players)[None, :]) % num_players
    family = np.arange(families)[None, :, None]
    for frame in range(history_length + 1):
        position = positions - frame
        live = np.flatnonzero(position >= 0)
        base = frame * frame_channels
        if seat_channels:
            # Splitting the channel axis of a slice is always a view: writes land in features.
            block = features[:, base:base + seat_channels].reshape(
                num_rows, families, num_players, height, width)
            block[live] = planes.per_seat[
                position[live, None, None], seat_of[live, None, :], family]
        start = base + seat_channels
        if viewed_channels:
            assert planes.viewed is not None
            features[live, start:start + viewed_channels] = \
                planes.viewed[position[live], movers[live] - 1]
        features[live, start + viewed_channels:base + frame_channels] = \
            planes.shared[position[live]]
    return EncodedFeatures(features=features,
                           globals=planes.globals[positions].astype(np.float32, copy=False),
                           channels=layout.channels, global_names=layout.global_names)


def _check_planes(planes: PositionPlanes, num_players: int) -> None:
    """A game plugin's planes must match the names it declares, or channels would lie."""
    positions = planes.shared.shape[0]
    height, width = planes.shared.shape[-2:]
    expected = {
        "per_seat": (positions, num_players, len(planes.per_seat_names), height, width),
        "shared": (positions, len(planes.shared_names), height, width),
        "globals": (positions, len(planes.global_names)),
    }
    if planes.viewed is not None or planes.viewed_names:
        expected["viewed"] = (positions, num_players, len(planes.viewed_names), height, width)
    for name, shape in expected.items():
        array = getattr(planes, name)
        got = None if array is None else array.shape
        if got != shape:
            raise DatasetError(f"game planes {name} have shape {got}, expected {shape}",
                               array=name, check="shape")
