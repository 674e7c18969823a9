"""Feature versions: which one exports use, the settings of an export, and conversions.

Every schema axis is versioned and checked (feature version, history length, channel names),
so rows of two layouts never meet unnoticed. When they must meet, a `FeatureAdapter` converts
by channel name: dropping families is a pure selection, and adding derived families asks the
game to recompute them from the stones, never a guess.
"""
from __future__ import annotations

from typing import Annotated, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from playstream.dataset import DatasetConfig
from playstream.errors import ConfigMismatchError, DatasetError, FeatureVersionError, UnknownGameError
from playstream.games import MAX_SEATS, Game, get_game
from playstream.records import MAX_MOVES

from .features import MAX_HISTORY_LENGTH, FeatureLayout, check_feature_request, feature_layout


def get_feature_version(game: Game, board_type: str | None = None) -> str:
    """The feature version new exports of ``game`` use: the last one it declares."""
    return game.feature_versions[-1]


def resolve_feature_version(game_name: str, feature_version: str | None) -> str:
    """``feature_version`` checked against the game's own versions, or the game's default
    when None; FeatureVersionError listing the game's versions otherwise."""
    game = get_game(game_name)
    if feature_version is None:
        return get_feature_version(game)
    check_feature_request(game, feature_version, 0)
    return feature_version


class ExportSettings(BaseModel):
    """What one export produces: which game and board, which features, which rows."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    game: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "connect"
    board_type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    num_players: Annotated[int, Field(ge=1, le=MAX_SEATS)]
    feature_version: str
    history_length: Annotated[int, Field(ge=0, le=MAX_HISTORY_LENGTH)] = 3
    sample_every: Annotated[int, Field(ge=1, le=MAX_MOVES)] = 1
    dense_policy: bool = False
    min_moves: Annotated[int, Field(ge=0, le=MAX_MOVES)] = 0

    @model_validator(mode="before")
    @classmethod
    def _default_version(cls, data: object) -> object:
        """No feature version given: the game's default (an unknown game fails later, in
        `dataset_config`, as an UnknownGameError)."""
        if isinstance(data, dict) and data.get("feature_version") is None:
            game = data.get("game", "connect")
            try:
                data = {**data, "feature_version": get_feature_version(get_game(game))}
            except UnknownGameError:  # reported by dataset_config with its own error
                data = {**data, "feature_version": ""}
        return data

    def dataset_config(self) -> DatasetConfig:
        """The configuration the rows of this export carry, from the game's own action
        count and feature spec (UnknownGameError / FeatureVersionError if the game lacks them)."""
        game = get_game(self.game)
        if self.num_players not in game.player_counts(self.board_type):
            raise ConfigMismatchError(
                f"{game.name} {self.board_type} is played by "
                f"{', '.join(map(str, game.player_counts(self.board_type)))} players, not "
                f"{self.num_players}", num_players=self.num_players)
        layout = feature_layout(game, self.board_type, self.num_players, self.feature_version,
                                self.history_length)
        return DatasetConfig(
            game=game.name, game_version=game.version, board_type=self.board_type,
            num_players=self.num_players, feature_version=self.feature_version,
            history_length=self.history_length, channels=layout.channels,
            global_names=layout.global_names, policy_size=game.num_actions(self.board_type),
            height=layout.height, width=layout.width, value_seats=self.num_players,
            binary_channels=layout.binary_channels)


Deriver = Callable[[np.ndarray], np.ndarray]
"""Per-seat planes [N, frames, seats, S_in, H, W] -> [N, frames, seats, S_out, H, W]."""


class FeatureAdapter:
    """Converts features [N, C_in, H, W] of one layout into [N, C_out, H, W] of another."""

    def __init__(self, layout_in: FeatureLayout, layout_out: FeatureLayout, height: int,
                 width: int, derive: Deriver | None) -> None:
        self.num_players = layout_in.num_players
        self.channels_in = layout_in.channels
        self.channels_out = layout_out.channels
        self.height = height
        self.width = width
        self._layout_in = layout_in
        self._derive = derive
        if derive is None:
            position = {name: i for i, name in enumerate(self.channels_in)}
            self._select = np.array([position[name] for name in self.channels_out],
                                    dtype=np.int64)
        else:
            per_frame = len(self.channels_in) // (layout_in.history_length + 1)
            frame_in = self.channels_in[:per_frame]
            self._shared = np.array([frame_in.index(f"f0:{name}")
                                     for name in layout_out.shared_names], dtype=np.int64)

    def adapt(self, features: np.ndarray) -> np.ndarray:
        """float32 [N, C_out, H, W]; DatasetError if ``features`` is not of the input layout."""
        expected = (len(self.channels_in), self.height, self.width)
        if features.ndim != 4 or features.shape[1:] != expected:
            raise DatasetError(f"features of shape {features.shape}, expected (N, "
                               f"{', '.join(map(str, expected))})", array="features",
                               check="shape")
        if self._derive is None:
            return features[:, self._select]
        rows = features.shape[0]
        frames = self._layout_in.history_length + 1
        families = len(self._layout_in.per_seat_names)
        by_frame = features.reshape(rows, frames, -1, self.height, self.width)
        seats = self.num_players
        per_seat = by_frame[:, :, :seats * families].reshape(
            rows, frames, families, seats, self.height, self.width).transpose(0, 1, 3, 2, 4, 5)
        derived = self._derive(per_seat)
        derived = derived.transpose(0, 1, 3, 2, 4, 5).reshape(
            rows, frames, -1, self.height, self.width)
        out = np.concatenate([derived, by_frame[:, :, self._shared]], axis=2)
        return out.reshape(rows, len(self.channels_out), self.height, self.width).astype(
            np.float32, copy=False)


def get_feature_adapter(from_version: str, to_version: str, *, game: Game, board_type: str,
                        history_length: int, num_players: int = 2) -> FeatureAdapter:
    """An adapter from ``from_version`` to ``to_version`` features of ``game`` on a board.

    Raises FeatureVersionError for an unknown version, for globals or shared planes that
    differ, or for per-seat families the game cannot derive from the source ones.
    """
    layout_in = feature_layout(game, board_type, num_players, from_version, history_length)
    layout_out = feature_layout(game, board_type, num_players, to_version, history_length)
    context = {"from_version": from_version, "to_version": to_version}
    if layout_in.global_names != layout_out.global_names:
        raise FeatureVersionError("the versions have different globals; an adapter converts "
                                  "feature planes only", **context)
    if set(layout_out.channels) <= set(layout_in.channels):
        return FeatureAdapter(layout_in, layout_out, layout_in.height, layout_in.width, None)
    missing = sorted(set(layout_out.shared_names) - set(layout_in.shared_names))
    if missing:
        raise FeatureVersionError(f"shared planes {', '.join(missing)} of {to_version} are not "
                                  f"in {from_version} and cannot be derived", **context)

    def derive(per_seat: np.ndarray) -> np.ndarray:
        return game.derive_per_seat(per_seat, board_type, from_version, to_version)

    # One empty frame tells whether the game can derive at all and whether it yields the
    # families it declares, before any real data depends on it.
    shape = (layout_in.height, layout_in.width)
    probe = derive(np.zeros((1, 1, num_players, len(layout_in.per_seat_names), *shape),
                            dtype=np.float32))
    want = (1, 1, num_players, len(layout_out.per_seat_names), *shape)
    if probe.shape != want:
        raise FeatureVersionError(f"{game.name} derives per-seat planes of shape {probe.shape}, "
                                  f"expected {want}", **context)
    return FeatureAdapter(layout_in, layout_out, layout_in.height, layout_in.width, derive)
