"""`playstream selfplay`: play games into a JSONL file, a game database, or a Kafka topic."""
from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click

from playstream.cli.common import Summary, progress, reports_errors
from playstream.cli.metrics import serving_metrics
from playstream.cli.options import MetricsEndpoint, game_option, progress_option
from playstream.cli.publish import run_selfplay_worker, selfplay_worker_options
from playstream.errors import GameFileError
from playstream.gamefiles import GameDatabase, JsonlWriter
from playstream.games import MAX_SEATS, get_game
from playstream.selfplay import AGENTS, agent_names, generate_records


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # a --forever worker stops cleanly on SIGTERM, as on Ctrl-C


@click.command("selfplay")
@click.option("--board-type", required=True,
              help="A board type of the game (`playstream games` lists them).")
@click.option("--num-players", type=click.IntRange(1, MAX_SEATS), default=None,
              help="Seats (default: the board type's smallest seat count).")
@click.option("--games", "count", type=click.IntRange(1, None), default=None,
              help="Number of games to play.")
@click.option("--forever", is_flag=True, help="Play until stopped (SIGTERM/Ctrl-C); Kafka only.")
@click.option("--agent", default="random", show_default=True,
              help=f"{', '.join(AGENTS)}, or an agent the game provides (OpenSpiel's mcts is "
                   "its own MCTS bot).")
@click.option("--simulations", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="MCTS simulations per move.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Run seed: game i of a worker is seeded from (seed, --worker, i), so workers "
                   "sharing a seed play different games and a rerun replays its own.")
@click.option("--worker", default="0", show_default=True,
              help="Worker name on this node (part of game ids and the record's source).")
@game_option
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A .jsonl file or a .db game database; games are appended.")
@progress_option
@selfplay_worker_options
@reports_errors
def selfplay_cmd(board_type: str, num_players: int | None, count: int | None, forever: bool,
                 agent: str, simulations: int, seed: int, worker: str, game_name: str,
                 output: Path | None, show_progress: bool, bootstrap: str | None, topic: str,
                 partitions: int, spool_dir: Path, metrics_endpoint: MetricsEndpoint) -> None:
    """Play self-play games into a file (--output) or publish them to Kafka (--bootstrap)."""
    if (output is None) == (bootstrap is None):
        raise click.UsageError("give exactly one of --output FILE or --bootstrap-server "
                               "HOST:PORT")
    if forever == (count is not None):
        raise click.UsageError("give exactly one of --games N or --forever")
    if forever and bootstrap is None:
        raise click.UsageError("--forever needs --bootstrap-server (a file would grow without "
                               "end)")
    if metrics_endpoint.port and bootstrap is None:
        raise click.UsageError("--metrics-port needs --bootstrap-server")
    game = get_game(game_name)  # an unknown game, board, seat count or agent fails early
    if board_type not in game.board_types:
        raise click.UsageError(f"unknown board type {board_type!r} for {game_name}; known: "
                               f"{', '.join(game.board_types)}")
    counts = game.player_counts(board_type)
    num_players = counts[0] if num_players is None else num_players
    if num_players not in counts:
        raise click.UsageError(f"{game_name} {board_type} is played by "
                               f"{', '.join(map(str, counts))} players")
    if agent not in agent_names(game, board_type):
        raise click.UsageError(f"unknown agent {agent!r} for {game_name}; choose one of "
                               f"{', '.join(agent_names(game, board_type))}")
    records = generate_records(game_name=game_name, board_type=board_type,
                               num_players=num_players, agent=agent, seed=seed, count=count,
                               simulations=simulations, worker=worker)
    summary = Summary("selfplay")
    if bootstrap is not None:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        with serving_metrics(metrics_endpoint, "selfplay") as served, \
                progress(count, "selfplay", "game", enabled=show_progress) as bar:
            run_selfplay_worker(bootstrap, topic, spool_dir, records, summary, bar,
                                partitions=partitions, served=served)
        return
    assert output is not None
    if output.suffix not in (".jsonl", ".db"):
        raise GameFileError("output must end in .jsonl or .db", file=str(output))
    sink = JsonlWriter(output) if output.suffix == ".jsonl" else GameDatabase(output)
    with sink, progress(count, "selfplay", "game", enabled=show_progress) as bar:
        for record in records:
            sink.write(record)
            summary.count("games")
            summary.count("moves", len(record.moves))
            bar.update(1)
    summary.outputs.append(output)
    summary.echo()
