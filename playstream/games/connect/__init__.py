"""The built-in game: k in a row on four boards, 2 to 4 players.

`GAME` is what the ``playstream.games`` entry point ``connect`` loads; it only routes the
`Game` protocol to the rules and the planes modules.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from playstream.games.base import (CONTRACT_VERSION, FeatureSpec, GameDefaults, GameLimits,
                                   Outcome, PositionPlanes, Replay)
from playstream.games.connect import planes, rules, symmetry
from playstream.games.connect.rules import BoardGeometry, ConnectState
from playstream.games.symmetry import Symmetries

__all__ = ["GAME", "ConnectGame", "ConnectState"]


class ConnectGame(GameDefaults):
    """The `Game` protocol for connect; stateless, so one shared instance serves everyone.
    Its values come from ranks (the default), it has no chance moves and its actions are
    the cells of the board's grid."""

    contract_version = CONTRACT_VERSION
    name = "connect"
    version = "1"
    board_types = rules.BOARD_TYPES
    feature_versions = planes.FEATURE_VERSIONS

    def geometry(self, board_type: str) -> BoardGeometry:
        """Connect's own grid (not part of the contract)."""
        return rules.board_spec(board_type).geometry

    def num_actions(self, board_type: str) -> int:
        return rules.board_spec(board_type).geometry.policy_size

    def player_counts(self, board_type: str) -> tuple[int, ...]:
        rules.board_spec(board_type)
        return tuple(range(rules.MIN_PLAYERS, rules.MAX_PLAYERS + 1))

    def feature_spec(self, board_type: str, feature_version: str) -> FeatureSpec:
        return planes.feature_spec(board_type, feature_version)

    def limits(self, board_type: str) -> GameLimits:
        cells = rules.board_spec(board_type).cells  # every move fills a cell
        return GameLimits(max_moves=cells, max_search_entries=cells)

    def new_state(self, board_type: str, num_players: int) -> ConnectState:
        return rules.new_state(board_type, num_players)

    def legal_moves(self, state: ConnectState) -> np.ndarray:
        return rules.legal_moves(state)

    def apply_move(self, state: ConnectState, move: int) -> None:
        rules.apply_move(state, move)

    def outcome(self, state: ConnectState) -> Outcome | None:
        return state.outcome

    def replay(self, board_type: str, num_players: int, moves: Sequence[int]) -> Replay:
        return rules.replay(board_type, num_players, moves)

    def position_planes(self, replay: Replay, feature_version: str) -> PositionPlanes:
        return planes.position_planes(replay, feature_version)

    def state_planes(self, state: ConnectState, feature_version: str) -> PositionPlanes:
        return planes.state_planes(state, feature_version)

    def derive_per_seat(self, per_seat: np.ndarray, board_type: str, from_version: str,
                        to_version: str) -> np.ndarray:
        return planes.derive_per_seat(per_seat, board_type, from_version, to_version)

    def symmetries(self, board_type: str) -> Symmetries:
        return symmetry.symmetries(board_type)


GAME = ConnectGame()
