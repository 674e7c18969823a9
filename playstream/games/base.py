"""The contract between the pipeline and a game engine (contract version 2).

The pipeline never imports a specific game: it looks one up by name in the registry
(`playstream.games.get_game`) and talks to it only through `Game`. A team plugs in its own
engine by implementing this protocol and registering it under the entry-point group
``playstream.games`` (docs/PLUGINS.md).

The game, not the pipeline, declares every shape: how many actions a board type has (an
action is an index in [0, num_actions), not necessarily a cell), which feature versions it
encodes and what their planes are, how many seats play, whether chance moves occur, how
values are derived, its symmetries and its limits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from playstream.errors import FeatureVersionError, IllegalMoveError
from playstream.games.symmetry import Symmetries

CONTRACT_VERSION = 2
"""Version of this protocol; a game states the one it implements as ``contract_version``."""

CHANCE = 0
"""The mover of a chance move (a die roll, a deal) in `Replay.movers` and ``state.to_move``:
chance moves are replayed and validated like any move but give no training row."""

MAX_SEATS = 8
"""Most seats a game may declare; records and datasets are sized by the game's own count."""

MAX_MOVES = 1 << 16
"""Global hard cap on moves per record (chance moves included); a game's `GameLimits` may
only lower it. Chess needs thousands, connect at most its cell count."""

MAX_SEARCH_ENTRIES = 8192
"""Global hard cap on search entries per move (root children of one search)."""

ValueSource = Literal["ranks", "returns"]


@dataclass(frozen=True)
class Outcome:
    """Final result. ``ranks[s]`` is seat s+1's rank, 1 = best, in competition ranking: k seats
    that tie over ranks r..r+k-1 all hold rank r (a two-player draw is (1, 1)). ``winner`` is
    the seat ranked 1 when exactly one seat holds rank 1, else None. ``returns`` are the
    game's own payoffs per seat (None for games whose values come from ranks)."""

    ranks: tuple[int, ...]
    winner: int | None
    termination: str
    returns: tuple[float, ...] | None = None


@dataclass
class Replay:
    """Everything a replay of a move list yields that encoders need.

    ``movers[t]`` is the seat (1-based) that played ``moves[t]``, or `CHANCE` for a chance
    outcome; ``outcome`` is None when the move list ends before the game does. ``states`` is
    free for the game (a plugin may keep what it needs to compute planes without replaying
    twice); the pipeline never reads it.
    """

    board_type: str
    num_players: int
    moves: np.ndarray  # int64 [T]
    movers: np.ndarray  # int64 [T], 1-based seats, CHANCE for chance moves
    outcome: Outcome | None
    states: Any = None


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature version of a game on one board type is made of.

    Three kinds of planes, all of shape (H, W) (any size, 1 x 1 included):

    - ``per_seat_names``: families with one plane per absolute seat; the generic encoder
      rotates them so that rel0 is the seat to move (connect's stones).
    - ``viewed_names``: planes already seen from one seat's view (OpenSpiel's
      ``observation_tensor(player)``); the encoder takes the mover's view, in history frames
      too, so every frame of a row is seen by the same seat.
    - ``shared_names``: planes that belong to no seat.

    ``global_names`` are non-spatial inputs from the view of the seat to move. ``binary``
    names the families / planes / globals whose values are always 0 or 1 (the dataset
    records it per channel so that binary channels can be bit-packed).
    """

    per_seat_names: tuple[str, ...]
    viewed_names: tuple[str, ...]
    shared_names: tuple[str, ...]
    global_names: tuple[str, ...]
    height: int
    width: int
    binary: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class GameLimits:
    """Per-game bounds a record is checked against, within the global hard caps of
    `playstream.records` (MAX_MOVES, MAX_POLICY_ENTRIES, MAX_RECORD_BYTES)."""

    max_moves: int
    max_search_entries: int


@dataclass(frozen=True)
class PositionPlanes:
    """Feature planes for positions 0..T of one game (position t = before move t).

    ``per_seat[t, s]`` holds the families of absolute seat s+1 (exactly n seats, no empty
    slots); ``viewed[t, s]`` the planes of position t seen by seat s+1; ``shared[t]`` the
    planes of no seat; ``globals[t]`` the globals from the view of the seat to move at t.
    """

    per_seat: np.ndarray  # float32 [T+1, n, S, H, W]
    shared: np.ndarray  # float32 [T+1, Q, H, W]
    globals: np.ndarray  # float32 [T+1, G]
    per_seat_names: tuple[str, ...]  # S family names, e.g. ("stones", "threats")
    shared_names: tuple[str, ...]  # Q names
    global_names: tuple[str, ...]  # G names
    viewed: np.ndarray | None = None  # float32 [T+1, n, V, H, W]
    viewed_names: tuple[str, ...] = ()


class AgentFactory(Protocol):
    """How a game provides its own self-play agent (OpenSpiel's MCTS bot, say)."""

    def __call__(self, seed: int, simulations: int) -> Any: ...


@runtime_checkable
class Game(Protocol):
    """A game engine as the pipeline uses it. All methods are pure (no I/O).

    ``state.to_move`` is the seat to move (1-based), `CHANCE` at a chance node, None when the
    game is over; ``state.copy()`` returns an independent state (search agents need it).
    """

    contract_version: int
    name: str
    version: str
    board_types: tuple[str, ...]
    feature_versions: tuple[str, ...]  # the last one is the default for new exports
    value_source: ValueSource

    def num_actions(self, board_type: str) -> int:
        """Moves and search statistics are action indices in [0, num_actions)."""
        ...

    def player_counts(self, board_type: str) -> tuple[int, ...]:
        """The seat counts this board type can be played with (each in 1..MAX_SEATS)."""
        ...

    def feature_spec(self, board_type: str, feature_version: str) -> FeatureSpec:
        """The planes of a feature version; FeatureVersionError for an unknown version."""
        ...

    def limits(self, board_type: str) -> GameLimits: ...

    def returns_range(self, board_type: str) -> tuple[float, float]:
        """(min, max) of a seat's return; values scale returns linearly onto [-1, 1]."""
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

    def agents(self, board_type: str) -> Mapping[str, AgentFactory]:
        """Agents the game provides itself, by name; they take precedence over the generic
        agents of the same name (empty: the generic ones work through this protocol)."""
        ...

    def new_state(self, board_type: str, num_players: int) -> Any:
        """A fresh mutable state."""
        ...

    def legal_moves(self, state: Any) -> np.ndarray:
        """int64 array of legal actions (the possible outcomes at a chance node, empty when
        the game is over)."""
        ...

    def chance_outcomes(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        """At a chance node: (actions int64 [k], probabilities float64 [k] summing to 1)."""
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
        """The game's version adapter: convert per-seat plane families between versions.

        ``per_seat`` is float32 [..., seats, S_from, H, W] (any leading axes, seats in any
        fixed order, e.g. relative to the mover); returns [..., seats, S_to, H, W]. Raises
        FeatureVersionError when the target planes cannot be derived from the source ones.
        """
        ...


def ranks_from_returns(returns: Sequence[float]) -> tuple[int, ...]:
    """Competition ranks of seats by return, higher is better ((1, 1) for a tie of two)."""
    values = np.asarray(returns, dtype=np.float64)
    return tuple(int(1 + (values > v).sum()) for v in values)


def winner_of(ranks: Sequence[int]) -> int | None:
    """The seat ranked 1 when exactly one seat is, else None."""
    firsts = [seat for seat, rank in enumerate(ranks, start=1) if rank == 1]
    return firsts[0] if len(firsts) == 1 else None


class GameDefaults:
    """Defaults a plugin may inherit for the optional parts of `Game`: ranks for values,
    no chance, no symmetry, no agents of its own, no version adapter, generous limits. The
    pipeline never relies on this class: it only calls the protocol."""

    contract_version = CONTRACT_VERSION
    value_source: ValueSource = "ranks"

    def limits(self, board_type: str) -> GameLimits:
        return GameLimits(max_moves=MAX_MOVES, max_search_entries=MAX_SEARCH_ENTRIES)

    def returns_range(self, board_type: str) -> tuple[float, float]:
        return (-1.0, 1.0)

    def symmetries(self, board_type: str) -> Symmetries:
        spec = self.feature_spec(board_type, self.feature_versions[-1])  # type: ignore[attr-defined]
        return Symmetries.identity(spec.height * spec.width,
                                   self.num_actions(board_type))  # type: ignore[attr-defined]

    def agents(self, board_type: str) -> Mapping[str, AgentFactory]:
        return {}

    def chance_outcomes(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        raise IllegalMoveError(f"{self.name} has no chance nodes",  # type: ignore[attr-defined]
                               field="state")

    def derive_per_seat(self, per_seat: np.ndarray, board_type: str, from_version: str,
                        to_version: str) -> np.ndarray:
        raise FeatureVersionError(
            f"{self.name} cannot derive {to_version} planes from "  # type: ignore[attr-defined]
            f"{from_version}", from_version=from_version, to_version=to_version)
