"""Self-play games as validated records, reproducible from (seed, worker, game index).

Each game's seed is derived from the run seed, the worker's name and the game's index: a
worker that is restarted with the same seed regenerates exactly its own games with the same
ids, and two workers started with one seed (the demo's, or a fleet's) play different games
instead of the same games under different ids, which deduplication by id cannot catch.
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
from datetime import datetime, timezone
from typing import Iterator

import numpy as np

from playstream.errors import PlaystreamError
from playstream.games import Game, get_game
from playstream.selfplay.agents import Agent, MCTSAgent, RandomAgent, play_game
from playstream.records import GameRecord, MoveSearch, Source

AGENTS = ("random", "mcts")
"""The generic agents: they play any game through the `Game` protocol."""


def agent_names(game: Game, board_type: str) -> tuple[str, ...]:
    """Every agent that can play ``game`` on ``board_type``: generic ones and the game's."""
    return tuple(sorted(set(AGENTS) | set(game.agents(board_type))))


def make_agent(name: str, seed: int, simulations: int, game: Game | None = None,
               board_type: str | None = None) -> Agent:
    """The agent ``name``: the game's own when it provides one (OpenSpiel's MCTS bot, say),
    else the generic one."""
    if game is not None and board_type is not None:
        own = game.agents(board_type).get(name)
        if own is not None:
            return own(seed, simulations)
    if name == "random":
        return RandomAgent(seed)
    if name == "mcts":
        return MCTSAgent(seed, simulations=simulations)
    known = agent_names(game, board_type) if game is not None and board_type else AGENTS
    raise PlaystreamError(f"unknown agent {name!r}; choose one of {', '.join(known)}",
                          field="agent")


def game_seed(run_seed: int, worker: str, index: int) -> int:
    """The seed of game ``index`` of ``worker``: a SeedSequence of (run seed, a 64-bit digest
    of the worker's name, index), as a non-negative 63-bit integer (it is stored in the
    record)."""
    worker_key = int.from_bytes(hashlib.blake2b(worker.encode(), digest_size=8).digest(), "big")
    entropy = [run_seed % 2**64, worker_key, index]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def game_id(game_name: str, board_type: str, num_players: int, source: Source,
            index: int) -> str:
    """Readable prefix plus a digest of everything that determines the game, so ids are
    stable for a restarted worker and distinct across nodes, workers, agents and seeds."""
    ident = json.dumps([game_name, board_type, num_players, source.model_dump(), index],
                       sort_keys=True)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
    board = re.sub(r"[^A-Za-z0-9._-]+", "-", board_type).strip("-")  # go(board_size=9)
    return f"{game_name}-{board}-{num_players}p-{digest}"


def generate_records(*, game_name: str = "connect", board_type: str, num_players: int,
                     agent: str, seed: int, start: int = 0, count: int | None = None,
                     simulations: int = 64, node: str | None = None,
                     worker: str = "0") -> Iterator[GameRecord]:
    """Play games ``start``, ``start+1``, ... of ``worker`` (forever when ``count`` is
    None)."""
    game = get_game(game_name)
    node = node or socket.gethostname()
    player = make_agent(agent, seed, simulations, game, board_type)
    settings: dict[str, str | int | float | bool] = {"seed": seed}
    if agent == "mcts":
        settings["simulations"] = simulations
    source = Source(node=node[:256], worker=worker, agent=agent, settings=settings)
    index = start
    while count is None or index < start + count:
        gseed = game_seed(seed, worker, index)
        created = datetime.now(timezone.utc)
        played = play_game(game, board_type, num_players, player, gseed)
        assert played.outcome is not None  # no max_moves: the game always ends
        returns = None if played.outcome.returns is None else list(played.outcome.returns)
        search = None
        if agent == "mcts":
            search = [None if s is None else MoveSearch(
                policy_indices=s.policy_indices, policy_probs=s.policy_probs,
                root_value=s.root_value) for s in played.search]
        yield GameRecord(
            game_id=game_id(game_name, board_type, num_players, source, index),
            game=game.name, game_version=game.version, board_type=board_type,
            num_players=num_players, seed=gseed, created_at=created,
            finished_at=datetime.now(timezone.utc), source=source, moves=played.moves,
            search=search, ranks=list(played.outcome.ranks), winner=played.outcome.winner,
            termination=played.outcome.termination, returns=returns)
        index += 1
