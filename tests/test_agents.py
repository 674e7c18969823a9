"""Self-play agents: values from ranks, reproducibility, search statistics, replayability."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from playstream.errors import IllegalMoveError
from playstream.games import Outcome
from playstream.selfplay.agents import MCTSAgent, RandomAgent, play_game, seat_values
from playstream.games.connect import GAME

BOARDS = ("square8", "square19", "hex8", "hexagonal")


@pytest.mark.parametrize("ranks,values", [
    ((1, 2), [1, -1]),
    ((2, 1), [-1, 1]),
    ((1, 1), [0, 0]),
    ((1, 2, 3), [1, 0, -1]),
    ((1, 2, 2), [1, -0.5, -0.5]),
    ((1, 1, 1), [0, 0, 0]),
    ((1, 2, 3, 4), [1, 1 / 3, -1 / 3, -1]),
    ((3, 1, 4, 2), [-1 / 3, 1, -1, 1 / 3]),
    ((1, 2, 2, 4), [1, 0, 0, -1]),
    ((2, 2, 2, 1), [-1 / 3, -1 / 3, -1 / 3, 1]),
    ((1, 1, 3, 3), [2 / 3, 2 / 3, -2 / 3, -2 / 3]),
])
def test_seat_values_from_ranks(ranks: tuple[int, ...], values: list[float]) -> None:
    got = seat_values(Outcome(ranks=ranks, winner=None, termination="lines"))
    np.testing.assert_allclose(got, values, atol=1e-6)
    assert abs(got.sum()) < 1e-6


def replay_matches(board_type: str, num_players: int, played: Any) -> None:
    replay = GAME.replay(board_type, num_players, played.moves)
    assert replay.outcome == played.outcome
    assert replay.moves.tolist() == played.moves
    assert len(replay.movers) == len(played.moves)


@pytest.mark.parametrize("board_type", BOARDS)
@pytest.mark.parametrize("num_players", [2, 3, 4])
def test_random_games_replay_to_the_same_outcome(board_type: str, num_players: int) -> None:
    played = play_game(GAME, board_type, num_players, RandomAgent(seed=11), seed=num_players)
    assert played.outcome is not None
    assert played.search == [None] * len(played.moves)
    replay_matches(board_type, num_players, played)


@pytest.mark.parametrize("board_type,max_moves", [
    ("square8", None), ("hex8", None), ("square19", 4), ("hexagonal", 3)])
@pytest.mark.parametrize("num_players", [2, 3, 4])
def test_mcts_games_replay_to_the_same_outcome(board_type: str, max_moves: int | None,
                                               num_players: int) -> None:
    agent = MCTSAgent(seed=5, simulations=8 if max_moves is None else 2)
    played = play_game(GAME, board_type, num_players, agent, seed=1, max_moves=max_moves)
    if max_moves is None:
        assert played.outcome is not None
    else:
        assert len(played.moves) == max_moves and played.outcome is None
    replay_matches(board_type, num_players, played)
    state = GAME.new_state(board_type, num_players)
    for move, search in zip(played.moves, played.search):
        assert search is not None
        assert search.policy_indices == sorted(set(search.policy_indices))
        assert set(search.policy_indices) <= set(GAME.legal_moves(state).tolist())
        probs = np.array(search.policy_probs)
        assert len(probs) == len(search.policy_indices) and (probs > 0).all()
        assert probs.sum() == pytest.approx(1.0)
        # Shares are visit counts over the simulation count, and the move is most visited.
        np.testing.assert_allclose(probs * agent.simulations,
                                   np.round(probs * agent.simulations))
        assert probs[search.policy_indices.index(move)] == probs.max()
        assert -1.0 <= search.root_value <= 1.0
        GAME.apply_move(state, move)


def test_same_seeds_give_the_same_game() -> None:
    first = play_game(GAME, "hex8", 3, MCTSAgent(seed=2, simulations=8), seed=9)
    agent = MCTSAgent(seed=2, simulations=8)
    play_game(GAME, "hex8", 3, agent, seed=4)  # history must not leak into the next game
    again = play_game(GAME, "hex8", 3, agent, seed=9)
    assert again == first
    other = play_game(GAME, "hex8", 3, MCTSAgent(seed=2, simulations=8), seed=10)
    assert other.moves != first.moves


def test_random_agent_is_seeded() -> None:
    runs = [play_game(GAME, "square8", 2, RandomAgent(seed), seed=game_seed).moves
            for seed, game_seed in [(1, 1), (1, 1), (1, 2), (2, 1)]]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2] and runs[0] != runs[3]


def test_max_moves_truncates() -> None:
    played = play_game(GAME, "square8", 4, RandomAgent(3), seed=0, max_moves=5)
    assert len(played.moves) == 5 and played.outcome is None
    assert GAME.replay("square8", 4, played.moves).movers.tolist() == [1, 2, 3, 4, 1]


def late_first_line(board_type: str, num_players: int) -> Any:
    """A position from a random game just before its first line, with 4 to 16 moves left:
    completing the line there gives the mover rank 1, better than anything else."""
    for seed in range(200):
        played = play_game(GAME, board_type, num_players, RandomAgent(seed), seed=0)
        state = GAME.new_state(board_type, num_players)
        for move in played.moves:
            after = state.copy()
            GAME.apply_move(after, move)
            if any(after.ranks):
                if 4 <= len(GAME.legal_moves(state)) <= 16:
                    return state
                break
            state = after
    raise AssertionError(f"no late first line in 200 random {board_type} games")


@pytest.mark.parametrize("board_type", ["square8", "hex8"])
@pytest.mark.parametrize("num_players", [2, 3, 4])
def test_mcts_takes_a_line_for_the_seat_to_move(board_type: str, num_players: int) -> None:
    """Values are per seat: the search must favour the seat to move, whoever it is."""
    state = late_first_line(board_type, num_players)
    mover = state.to_move
    for seed in range(3):
        decision = MCTSAgent(seed, simulations=64).select(GAME, state, num_players)
        after = state.copy()
        GAME.apply_move(after, decision.move)
        assert after.ranks[mover - 1] == 1
        assert decision.search is not None and decision.search.root_value > 0
    assert state.ranks == [0] * num_players  # the search worked on copies


def winning_moves(state: Any) -> list[int]:
    """Moves that end a 2-player game with the mover winning."""
    mover, wins = state.to_move, []
    for move in GAME.legal_moves(state).tolist():
        after = state.copy()
        GAME.apply_move(after, move)
        outcome = GAME.outcome(after)
        if outcome is not None and outcome.winner == mover:
            wins.append(move)
    return wins


def early_win_in_one() -> Any:
    """A square8 position from a random game where the mover can win at once with at least
    40 legal moves left: too many for the playouts to single the winning move out."""
    for seed in range(200):
        played = play_game(GAME, "square8", 2, RandomAgent(seed), seed=0)
        state = GAME.new_state("square8", 2)
        for move in played.moves:
            if len(GAME.legal_moves(state)) >= 40 and winning_moves(state):
                return state
            GAME.apply_move(state, move)
    raise AssertionError("no early win in one in 200 random square8 games")


def test_mcts_plays_a_win_in_one_among_many_moves() -> None:
    """Without the decisive-move check the search played the win in none of these 8 trials
    at 128 simulations: random playouts make lucky moves look as good as the winning one."""
    state = early_win_in_one()
    wins = winning_moves(state)
    for seed in range(8):
        decision = MCTSAgent(seed, simulations=128).select(GAME, state, 2)
        assert decision.move in wins
        assert decision.search is not None
        assert decision.search.policy_indices == [decision.move]
        assert decision.search.policy_probs == [1.0] and decision.search.root_value == 1.0


@pytest.mark.parametrize("agent", [RandomAgent(0), MCTSAgent(0, simulations=4)])
def test_agents_refuse_a_finished_game(agent: Any) -> None:
    played = play_game(GAME, "square8", 2, RandomAgent(1), seed=1)
    state = GAME.new_state("square8", 2)
    for move in played.moves:
        GAME.apply_move(state, move)
    with pytest.raises(IllegalMoveError, match="the game is over"):
        agent.select(GAME, state, 2)


@pytest.mark.parametrize("kwargs", [{"simulations": 0}, {"c_puct": 0.0}])
def test_mcts_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="simulations >= 1 and c_puct > 0"):
        MCTSAgent(0, **kwargs)  # type: ignore[arg-type]
