"""Self-play agents and the game loop that produces training games.

Agents see a game only through the `Game` protocol, plus two things every searchable state
offers: ``state.to_move`` (1-based seat, None when over) and ``state.copy()``. Every random
choice comes from one `numpy.random.Generator` per agent, re-seeded per game from the agent's
seed and the game's seed, so a game is reproducible from those two numbers alone, whatever
the agent played before.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from playstream.encoders.values import compute_multi_player_values
from playstream.errors import IllegalMoveError
from playstream.games.base import CHANCE, Game, Outcome


def seat_values(outcome: Outcome) -> np.ndarray:
    """Rank value per seat, as training targets define it (one formula, in encoders)."""
    return compute_multi_player_values(outcome, len(outcome.ranks))


@dataclass(frozen=True)
class SearchResult:
    """What an agent's search returned for one move: root visit shares over the visited moves
    (parallel lists, policy indices ascending, shares summing to 1) and the root value for the
    mover. Self-play copies it into the record's `MoveSearch`."""

    policy_indices: list[int]
    policy_probs: list[float]
    root_value: float


@dataclass(frozen=True)
class Decision:
    """What an agent plays, with the search that chose it so self-play can record targets."""

    move: int
    search: SearchResult | None  # None for agents that do not search


class Agent(Protocol):
    """A player `play_game` can seat; one instance plays every seat of a game."""

    def start_game(self, seed: int) -> None:
        """Re-seed for a new game so each game depends only on (agent seed, game seed)."""
        ...

    def select(self, game: Game, state: Any, num_players: int) -> Decision: ...


@dataclass
class PlayedGame:
    """A finished (or ``max_moves``-truncated, then ``outcome`` None) self-play game;
    ``search[i]`` is the search behind ``moves[i]``, None for agents that do not search."""

    moves: list[int]
    search: list[SearchResult | None]
    outcome: Outcome | None


def _legal(game: Game, state: Any) -> np.ndarray:
    moves = game.legal_moves(state)
    if len(moves) == 0:
        raise IllegalMoveError("no move to choose: the game is over")
    return moves


def _uniform(rng: np.random.Generator, moves: np.ndarray) -> int:
    """A uniform pick; scaling one `random()` draw is several times cheaper than
    `integers()` in the rollout loop, and the bias is below 2**-50 for any board here."""
    return int(moves[int(rng.random() * len(moves))])


class RandomAgent:
    """Uniform over legal moves: the cheapest way to fill a pipeline with legal games."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def start_game(self, seed: int) -> None:
        self._rng = np.random.default_rng([self.seed, seed])

    def select(self, game: Game, state: Any, num_players: int) -> Decision:
        return Decision(move=_uniform(self._rng, _legal(game, state)), search=None)


class _Node:
    """A searched state; statistics live on the parent as arrays so PUCT is one vector op."""

    __slots__ = ("state", "moves", "children", "visits", "value_sums", "total", "terminal")

    def __init__(self, game: Game, state: Any, rng: np.random.Generator,
                 num_players: int) -> None:
        self.state = state
        outcome = game.outcome(state)
        self.terminal = None if outcome is None else seat_values(outcome)
        # Shuffled so that ties among unvisited moves (all of them, under uniform priors)
        # break randomly instead of towards low policy indices.
        self.moves = rng.permutation(game.legal_moves(state)) if outcome is None \
            else np.zeros(0, dtype=np.int64)
        self.children: list[_Node | None] = [None] * len(self.moves)
        self.visits = np.zeros(len(self.moves))
        self.value_sums = np.zeros((len(self.moves), num_players))
        self.total = 0

    def pick(self, c_puct: float) -> int:
        seat = self.state.to_move - 1
        q = self.value_sums[:, seat] / np.maximum(self.visits, 1.0)
        u = c_puct / len(self.moves) * math.sqrt(max(self.total, 1)) / (1.0 + self.visits)
        return int(np.argmax(q + u))


class MCTSAgent:
    """PUCT search with uniform priors and random-playout values, one value per seat.

    Each seat's value comes from the playout's final ranks (`seat_values`), and every node
    picks children by the value of the seat to move there, which is what makes it work for
    3 and 4 players. The move played is the most visited root move (the better valued one
    among equals).

    A root move that ends the game with the mover's best value (1: first, alone) is played
    without searching, and its target is that move alone. The search cannot be relied on to
    find it: random playouts from the other moves win about half the time, so with ~50 moves
    and 128 simulations the winning move gets no more visits than lucky ones (8x8 connect games
    at 128 simulations took 120 of 314 available wins in one), which turns outcomes into
    coin flips that no value head can learn. This is the "decisive moves" enhancement
    (Teytaud & Teytaud, 2010).
    """

    def __init__(self, seed: int, simulations: int = 64, c_puct: float = 1.5) -> None:
        if simulations < 1 or not c_puct > 0:
            raise ValueError(f"need simulations >= 1 and c_puct > 0, got {simulations}, "
                             f"{c_puct}")
        self.seed = seed
        self.simulations = simulations
        self.c_puct = c_puct
        self._rng = np.random.default_rng(seed)

    def start_game(self, seed: int) -> None:
        self._rng = np.random.default_rng([self.seed, seed])

    def select(self, game: Game, state: Any, num_players: int) -> Decision:
        decisive = self._decisive(game, state, _legal(game, state))
        if decisive is not None:
            return Decision(move=decisive, search=SearchResult(
                policy_indices=[decisive], policy_probs=[1.0], root_value=1.0))
        root = _Node(game, state.copy(), self._rng, num_players)
        for _ in range(self.simulations):
            self._simulate(game, root, num_players)
        seat = state.to_move - 1
        visited = np.flatnonzero(root.visits)
        order = visited[np.argsort(root.moves[visited])]
        stats = SearchResult(
            policy_indices=[int(m) for m in root.moves[order]],
            policy_probs=(root.visits[order] / root.total).tolist(),
            root_value=float(root.value_sums[:, seat].sum() / root.total))
        most = np.flatnonzero(root.visits == root.visits.max())
        best = most[np.argmax(root.value_sums[most, seat])]  # equal visits: better value wins
        return Decision(move=int(root.moves[best]), search=stats)

    def _decisive(self, game: Game, state: Any, moves: np.ndarray) -> int | None:
        """A move that ends the game with value 1 for the mover, picked at random among
        several, or None."""
        seat = state.to_move - 1
        for move in self._rng.permutation(moves):
            after = state.copy()
            game.apply_move(after, int(move))
            outcome = game.outcome(after)
            if outcome is not None and seat_values(outcome)[seat] == 1.0:
                return int(move)
        return None

    def _simulate(self, game: Game, root: _Node, num_players: int) -> None:
        path: list[tuple[_Node, int]] = []
        node = root
        while True:
            if node.terminal is not None:
                value = node.terminal
                break
            index = node.pick(self.c_puct)
            path.append((node, index))
            child = node.children[index]
            if child is None:
                state = node.state.copy()
                game.apply_move(state, int(node.moves[index]))
                child = node.children[index] = _Node(game, state, self._rng, num_players)
                value = child.terminal if child.terminal is not None \
                    else seat_values(self._playout(game, state.copy()))
                break
            node = child
        for parent, index in path:
            parent.visits[index] += 1.0
            parent.value_sums[index] += value
            parent.total += 1

    def _playout(self, game: Game, state: Any) -> Outcome:
        outcome = game.outcome(state)
        while outcome is None:
            game.apply_move(state, _uniform(self._rng, game.legal_moves(state)))
            outcome = game.outcome(state)
        return outcome


def play_game(game: Game, board_type: str, num_players: int, agent: Agent, seed: int,
              max_moves: int | None = None) -> PlayedGame:
    """One self-play game with ``agent`` in every seat; stops early after ``max_moves``.

    Chance nodes are the game's, not the agent's: their outcome is drawn from
    `Game.chance_outcomes` with a generator of its own seeded by the game seed, so the dice
    of a game do not depend on how much the agent searched."""
    state = game.new_state(board_type, num_players)
    agent.start_game(seed)
    dice = np.random.default_rng([seed, CHANCE])
    moves: list[int] = []
    search: list[SearchResult | None] = []
    while game.outcome(state) is None and (max_moves is None or len(moves) < max_moves):
        if state.to_move == CHANCE:
            actions, probs = game.chance_outcomes(state)
            decision = Decision(move=int(actions[dice.choice(len(actions), p=probs)]),
                                search=None)
        else:
            decision = agent.select(game, state, num_players)
        game.apply_move(state, decision.move)
        moves.append(decision.move)
        search.append(decision.search)
    return PlayedGame(moves=moves, search=search, outcome=game.outcome(state))
