"""OpenSpiel's games as playstream games (the ``openspiel`` entry point; extra ``openspiel``).

A board type is an OpenSpiel game string from `BOARDS`, an allow-list: a record names its
board type, and a record must never make the pipeline load an arbitrary game. Actions are
OpenSpiel action ids (``num_actions = num_distinct_actions()``); the one feature version
``obs`` is ``observation_tensor(mover)`` in ``observation_tensor_shape()`` as mover-view
planes (absolute for every game here but othello, whose tensor is egocentric), plus a
one-hot ``to_move`` global, since some observations (pig's) do not show who moves. Values
come from ``returns()``. Chance nodes are chance moves. pyspiel is imported only here.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
import pyspiel
from open_spiel.python.algorithms import mcts
from open_spiel.python.observation import make_observation

from playstream.errors import FeatureVersionError, IllegalMoveError, UnknownGameError
from playstream.games.base import (CHANCE, CONTRACT_VERSION, MAX_MOVES, FeatureSpec,
                                   GameDefaults, GameLimits, Outcome, PositionPlanes, Replay,
                                   ranks_from_returns, winner_of)
from playstream.games.symmetry import Symmetries
from playstream.selfplay.agents import Decision, SearchResult

__all__ = ["BOARDS", "GAME", "OpenSpielGame", "OpenSpielState"]


# Cell maps of a square n x n grid: (name, (r, c) -> source (r, c)); the eight of the
# dihedral group. A map f is a gather: the transformed plane at cell i is the old one at f(i).
_DIHEDRAL = (
    ("identity", lambda r, c, n: (r, c)), ("rot90", lambda r, c, n: (c, n - 1 - r)),
    ("rot180", lambda r, c, n: (n - 1 - r, n - 1 - c)),
    ("rot270", lambda r, c, n: (n - 1 - c, r)), ("flip_lr", lambda r, c, n: (r, n - 1 - c)),
    ("flip_ud", lambda r, c, n: (n - 1 - r, c)), ("transpose", lambda r, c, n: (c, r)),
    ("anti_transpose", lambda r, c, n: (n - 1 - c, n - 1 - r)),
)
_OTHELLO = ("identity", "rot180", "transpose", "anti_transpose")


@dataclass(frozen=True)
class Board:
    """One registered OpenSpiel game: its observation channels that are not 0/1, and its
    symmetry group (verified against pyspiel: tests/test_openspiel.py)."""

    non_binary: frozenset[int] = frozenset()
    symmetry: str = "none"  # dihedral | othello | flip_columns | hex_rot180 | breakthrough


BOARDS: dict[str, Board] = {
    "tic_tac_toe": Board(symmetry="dihedral"),
    "connect_four": Board(symmetry="flip_columns"),
    "hex(board_size=7)": Board(symmetry="hex_rot180"),
    "breakthrough(rows=6,columns=6)": Board(symmetry="breakthrough"),
    "go(board_size=9)": Board(symmetry="dihedral"),
    "othello": Board(symmetry="othello"),
    "chess": Board(non_binary=frozenset({13, 15})),  # repetition count, fifty-move clock
    "pig(winscore=20)": Board(),  # a chance game: every turn starts with die rolls
}


def _symmetries(board_type: str, channels: int, height: int, width: int,
                num_actions: int) -> Symmetries:
    """The group of a board type as gathers. Cell actions (r * W + c) move with their cell,
    a trailing pass action stays; connect_four's actions are columns, breakthrough's encode
    (cell, direction, capture)."""
    kind = BOARDS[board_type].symmetry
    if kind == "none":
        return Symmetries.identity(height * width, num_actions)
    rows, cols = np.divmod(np.arange(height * width), width)
    if kind in ("dihedral", "othello"):
        maps = [m for m in _DIHEDRAL if kind == "dihedral" or m[0] in _OTHELLO]
    elif kind == "hex_rot180":
        maps = [_DIHEDRAL[0], _DIHEDRAL[2]]
    else:  # flip_columns, breakthrough: the left-right mirror
        maps = [_DIHEDRAL[0], _DIHEDRAL[4]]
    names, cells, actions, chans = [], [], [], []
    for name, f in maps:
        r, c = f(rows, cols, width)
        cell = r * width + c
        names.append(name)
        cells.append(cell)
        if kind == "flip_columns":
            action = cell[:width] if name == "identity" else width - 1 - np.arange(width)
        elif kind == "breakthrough":
            a = np.arange(num_actions)
            capture, rest = a % 2, a // 2
            direction, square = rest % 6, rest // 6
            mirror = np.array([2, 1, 0, 5, 4, 3]) if name != "identity" else np.arange(6)
            action = ((cell[square] * 6 + mirror[direction]) * 2 + capture)
        else:
            action = np.arange(num_actions)
            action[:height * width] = cell
        actions.append(action)
        channel = np.arange(channels)
        if kind == "hex_rot180" and name != "identity":  # the edges swap: 1<->2, 6<->7
            channel[[1, 2, 6, 7]] = [2, 1, 7, 6]
        chans.append(channel)
    return Symmetries(tuple(names), np.stack(cells).astype(np.int64),
                      np.stack(actions).astype(np.int64),
                      np.stack(chans).astype(np.int64) if kind == "hex_rot180" else None)
FEATURE_VERSION = "obs"


def _check_board(board_type: str) -> str:
    if board_type not in BOARDS:
        raise UnknownGameError(f"openspiel has no board type {board_type!r}; registered: "
                               f"{', '.join(BOARDS)}", field="board_type")
    return board_type


@lru_cache(maxsize=None)
def spiel_game(board_type: str) -> Any:
    """The loaded pyspiel game of a registered board type."""
    return pyspiel.load_game(_check_board(board_type))


def _plane_shape(game: Any) -> tuple[int, int, int]:
    """(C, H, W) of the observation tensor; 2-D tensors are [C, W], 1-D ones [C]."""
    shape = list(game.observation_tensor_shape())
    while len(shape) < 3:
        shape.insert(1, 1)
    c, h, w = shape
    return int(c), int(h), int(w)


class OpenSpielState:
    """A pyspiel state with the two things generic agents need: ``to_move`` and ``copy``."""

    __slots__ = ("state", "board_type")

    def __init__(self, state: Any, board_type: str) -> None:
        self.state = state
        self.board_type = board_type

    @property
    def to_move(self) -> int | None:
        if self.state.is_terminal():
            return None
        if self.state.is_chance_node():
            return CHANCE
        return int(self.state.current_player()) + 1

    def copy(self) -> OpenSpielState:
        return OpenSpielState(self.state.clone(), self.board_type)


class OpenSpielMCTS:
    """OpenSpiel's own MCTS bot; its root visit distribution is the soft policy target."""

    def __init__(self, seed: int, simulations: int) -> None:
        if simulations < 2:
            raise ValueError("OpenSpiel's MCTS needs at least 2 simulations (the first only "
                             "expands the root)")
        self.seed = seed
        self.simulations = simulations
        self._rs = np.random.RandomState(seed % (1 << 32))

    def start_game(self, seed: int) -> None:
        self._rs = np.random.RandomState(
            np.random.SeedSequence([self.seed, seed]).generate_state(1)[0])

    def select(self, game: Any, state: OpenSpielState, num_players: int) -> Decision:
        bot = mcts.MCTSBot(spiel_game(state.board_type), uct_c=2,
                           max_simulations=self.simulations,
                           evaluator=mcts.RandomRolloutEvaluator(n_rollouts=1,
                                                                 random_state=self._rs),
                           random_state=self._rs, solve=False)
        root = bot.mcts_search(state.state)
        visits = {int(c.action): int(c.explore_count) for c in root.children
                  if c.explore_count > 0}
        actions = sorted(visits)
        total = sum(visits.values())
        best = root.best_child()
        value = float(np.clip(best.total_reward / max(best.explore_count, 1), -1.0, 1.0))
        return Decision(move=int(best.action), search=SearchResult(
            policy_indices=actions, policy_probs=[visits[a] / total for a in actions],
            root_value=value))


class OpenSpielGame(GameDefaults):
    """The `Game` protocol over pyspiel; stateless apart from the cached loaded games."""

    contract_version = CONTRACT_VERSION
    name = "openspiel"
    version = "1"
    board_types = tuple(BOARDS)
    feature_versions = (FEATURE_VERSION,)
    value_source = "returns"

    def num_actions(self, board_type: str) -> int:
        return int(spiel_game(board_type).num_distinct_actions())

    def player_counts(self, board_type: str) -> tuple[int, ...]:
        return (int(spiel_game(board_type).num_players()),)

    def game_string(self, board_type: str) -> str:
        """OpenSpiel's own name of the game (parameters sorted)."""
        return str(spiel_game(board_type))

    def feature_spec(self, board_type: str, feature_version: str) -> FeatureSpec:
        if feature_version != FEATURE_VERSION:
            raise FeatureVersionError(f"unknown feature version {feature_version!r} for game "
                                      f"'openspiel'; known: {FEATURE_VERSION}",
                                      feature_version=feature_version)
        game = spiel_game(board_type)
        c, h, w = _plane_shape(game)
        names = tuple(f"obs{i}" for i in range(c))
        to_move = tuple(f"to_move_p{p + 1}" for p in range(game.num_players()))
        non_binary = BOARDS[board_type].non_binary
        binary = frozenset(n for i, n in enumerate(names) if i not in non_binary) | set(to_move)
        return FeatureSpec(per_seat_names=(), viewed_names=names, shared_names=(),
                           global_names=to_move, height=h, width=w, binary=frozenset(binary))

    def limits(self, board_type: str) -> GameLimits:
        game = spiel_game(board_type)
        chance = game.get_type().chance_mode != pyspiel.GameType.ChanceMode.DETERMINISTIC
        longest = int(game.max_game_length()) * (2 if chance else 1)
        return GameLimits(max_moves=min(MAX_MOVES, longest),
                          max_search_entries=self.num_actions(board_type))

    def symmetries(self, board_type: str) -> Symmetries:
        c, h, w = _plane_shape(spiel_game(board_type))
        return _symmetries(board_type, c, h, w, self.num_actions(board_type))

    def returns_range(self, board_type: str) -> tuple[float, float]:
        game = spiel_game(board_type)
        return (float(game.min_utility()), float(game.max_utility()))

    def agents(self, board_type: str) -> Mapping[str, Any]:
        return {"mcts": OpenSpielMCTS}

    def new_state(self, board_type: str, num_players: int) -> OpenSpielState:
        game = spiel_game(board_type)
        if num_players != game.num_players():
            raise IllegalMoveError(f"{board_type} is played by {game.num_players()} players, "
                                   f"not {num_players}", field="num_players")
        return OpenSpielState(game.new_initial_state(), board_type)

    def legal_moves(self, state: OpenSpielState) -> np.ndarray:
        if state.state.is_terminal():
            return np.zeros(0, dtype=np.int64)
        return np.asarray(state.state.legal_actions(), dtype=np.int64)

    def chance_outcomes(self, state: OpenSpielState) -> tuple[np.ndarray, np.ndarray]:
        if not state.state.is_chance_node():
            raise IllegalMoveError("not a chance node", field="state")
        outcomes = state.state.chance_outcomes()
        actions = np.array([a for a, _ in outcomes], dtype=np.int64)
        probs = np.array([p for _, p in outcomes], dtype=np.float64)
        return actions, probs / probs.sum()

    def apply_move(self, state: OpenSpielState, move: int, index: int | None = None) -> None:
        field = f"moves[{index}]" if index is not None else "move"
        if state.state.is_terminal():
            raise IllegalMoveError(f"move {move!r} played after the game is over", field=field)
        # Checked first: pyspiel would raise too, but print to stderr on the way.
        if isinstance(move, bool) or int(move) not in state.state.legal_actions():
            raise IllegalMoveError(f"action {move!r} is not legal here", field=field)
        state.state.apply_action(int(move))

    def outcome(self, state: OpenSpielState) -> Outcome | None:
        if not state.state.is_terminal():
            return None
        returns = tuple(float(r) for r in state.state.returns())
        ranks = ranks_from_returns(returns)
        return Outcome(ranks=ranks, winner=winner_of(ranks), termination="terminal",
                       returns=returns)

    def replay(self, board_type: str, num_players: int, moves: Sequence[int]) -> Replay:
        state = self.new_state(board_type, num_players)
        states = [state.state.clone()]
        movers = []
        for i, move in enumerate(moves):
            movers.append(state.to_move or 0)
            self.apply_move(state, move, i)
            states.append(state.state.clone())
        return Replay(board_type=board_type, num_players=num_players,
                      moves=np.asarray(moves, dtype=np.int64).reshape(-1),
                      movers=np.asarray(movers, dtype=np.int64), outcome=self.outcome(state),
                      states=states)

    def _planes(self, board_type: str, states: Sequence[Any]) -> PositionPlanes:
        game = spiel_game(board_type)
        c, h, w = _plane_shape(game)
        n = game.num_players()
        viewed = np.zeros((len(states), n, c, h, w), dtype=np.float32)
        to_move = np.zeros((len(states), n), dtype=np.float32)
        # OpenSpiel's observer fills one float32 buffer in place: the same values as
        # observation_tensor(p), about 50 times cheaper than converting its list.
        observer = make_observation(game)
        for t, state in enumerate(states):
            for p in range(n):
                observer.set_from(state, p)
                viewed[t, p] = observer.tensor.reshape(c, h, w)
            if not state.is_terminal() and not state.is_chance_node():
                to_move[t, state.current_player()] = 1.0
        spec = self.feature_spec(board_type, FEATURE_VERSION)
        return PositionPlanes(
            per_seat=np.zeros((len(states), n, 0, h, w), dtype=np.float32),
            shared=np.zeros((len(states), 0, h, w), dtype=np.float32), globals=to_move,
            per_seat_names=(), shared_names=(), global_names=spec.global_names,
            viewed=viewed, viewed_names=spec.viewed_names)

    def position_planes(self, replay: Replay, feature_version: str) -> PositionPlanes:
        self.feature_spec(replay.board_type, feature_version)
        states = replay.states
        if states is None:  # a Replay built elsewhere: replay it here
            states = self.replay(replay.board_type, replay.num_players,
                                 replay.moves.tolist()).states
        return self._planes(replay.board_type, states)

    def state_planes(self, state: OpenSpielState, feature_version: str) -> PositionPlanes:
        self.feature_spec(state.board_type, feature_version)
        return self._planes(state.board_type, [state.state])


GAME = OpenSpielGame()
