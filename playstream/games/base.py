"""The contract between the pipeline and a game engine.

The pipeline never imports a specific game: it looks one up by name in the registry
(`playstream.games.get_game`) and talks to it only through `Game`. A team plugs in its own
engine by implementing this protocol and registering it under the entry-point group
``playstream.games``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from playstream.games.symmetry import Symmetries


@dataclass(frozen=True)
class BoardGeometry:
    """Shape of a board as the encoders and policy targets see it.

    ``valid`` marks on-board cells of the H x W grid; policy index = row * W + column, so
    ``policy_size == H * W`` and off-board indices are never legal.
    """

    board_type: str
    height: int
    width: int
    valid: np.ndarray  # bool [H, W]

    @property
    def policy_size(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class Outcome:
    """Final result. ``ranks[s]`` is seat s+1's rank, 1 = best, in competition ranking: k seats
    that tie over ranks r..r+k-1 all hold rank r (a two-player draw is (1, 1)). ``winner`` is
    the seat ranked 1 when exactly one seat holds rank 1, else None."""

    ranks: tuple[int, ...]
    winner: int | None
    termination: str


@dataclass
class Replay:
    """Everything a replay of a move list yields that encoders need.

    ``movers[t]`` is the seat (1-based) that played ``moves[t]``; ``outcome`` is None when the
    move list ends before the game does.
    """

    board_type: str
    num_players: int
    moves: np.ndarray  # int64 [T]
    movers: np.ndarray  # int64 [T], 1-based seats
    outcome: Outcome | None


@dataclass(frozen=True)
class PositionPlanes:
    """Feature planes for positions 0..T of one game (position t = before move t).

    ``per_seat[t, s]`` holds the plane families of absolute seat s+1 (seats beyond n are zero);
    the generic encoder rotates them so that rel0 is always the seat to move.
    ``shared`` planes do not belong to a seat. ``globals`` are already from the view of the
    seat to move at that position.
    """

    per_seat: np.ndarray  # float32 [T+1, 4, S, H, W]
    shared: np.ndarray  # float32 [T+1, Q, H, W]
    globals: np.ndarray  # float32 [T+1, G]
    per_seat_names: tuple[str, ...]  # S family names, e.g. ("stones", "threats")
    shared_names: tuple[str, ...]  # Q names
    global_names: tuple[str, ...]  # G names


@runtime_checkable
class Game(Protocol):
    """A game engine as the pipeline uses it. All methods are pure (no I/O)."""

    name: str
    version: str
    board_types: tuple[str, ...]
    feature_versions: tuple[str, ...]

    def geometry(self, board_type: str) -> BoardGeometry: ...

    def new_state(self, board_type: str, num_players: int) -> Any:
        """A fresh mutable state; ``state.to_move`` is the seat to move, None when over."""
        ...

    def legal_moves(self, state: Any) -> np.ndarray:
        """int64 array of legal policy indices (empty when the game is over)."""
        ...

    def apply_move(self, state: Any, move: int) -> None:
        """Play ``move`` in place; raises IllegalMoveError (with field/context) if illegal."""
        ...

    def outcome(self, state: Any) -> Outcome | None: ...

    def replay(self, board_type: str, num_players: int, moves: Sequence[int]) -> Replay:
        """Replay a whole move list; raises IllegalMoveError naming the move index."""
        ...

    def position_planes(self, replay: Replay, feature_version: str) -> PositionPlanes:
        """Planes for every position of a replayed game, computed incrementally."""
        ...

    def state_planes(self, state: Any, feature_version: str) -> PositionPlanes:
        """Planes for a single state (T = 0): the reference the vectorised path must match."""
        ...

    def derive_per_seat(self, per_seat: np.ndarray, board_type: str, from_version: str,
                        to_version: str) -> np.ndarray:
        """Convert per-seat plane families between feature versions.

        ``per_seat`` is float32 [..., seats, S_from, H, W] (any leading axes, seats in any
        fixed order, e.g. relative to the mover); returns [..., seats, S_to, H, W]. Raises
        FeatureVersionError when the target planes cannot be derived from the source ones.
        """
        ...

    def symmetries(self, board_type: str) -> Symmetries:
        """The board's symmetry group as gathers over cells, actions and (optionally)
        channels, transform 0 the identity; `Symmetries.identity` for a game without any.

        Only the game knows how a transform moves its actions and which planes name a
        direction, and the training loader augments with exactly this group, so every
        transform must map the encoding of a position to the encoding of the transformed
        position (planes, policy and globals alike).
        """
        ...
