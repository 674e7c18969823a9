"""`playstream selfplay`: play games and store them in a JSONL file or a game database."""
from __future__ import annotations

from pathlib import Path

import click

from playstream.cli.common import Summary, progress, reports_errors
from playstream.errors import GameFileError
from playstream.gamefiles import GameDatabase, JsonlWriter
from playstream.games import get_game
from playstream.selfplay import AGENTS, generate_records


@click.command("selfplay")
@click.option("--board-type", required=True,
              help="A board of the game (connect: square8, square19, hex8, hexagonal).")
@click.option("--num-players", required=True, type=click.IntRange(2, 4))
@click.option("--games", "count", required=True, type=click.IntRange(1, None),
              help="Number of games to play.")
@click.option("--agent", type=click.Choice(AGENTS), default="random", show_default=True)
@click.option("--simulations", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="MCTS simulations per move.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--game", "game_name", default="connect", show_default=True,
              help="Registered game (entry point group playstream.games).")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A .jsonl file or a .db game database; games are appended.")
@reports_errors
def selfplay_cmd(board_type: str, num_players: int, count: int, agent: str, simulations: int,
                 seed: int, game_name: str, output: Path) -> None:
    """Play self-play games and append them to a JSONL file or SQLite game database."""
    if output.suffix not in (".jsonl", ".db"):
        raise GameFileError("output must end in .jsonl or .db", file=str(output))
    get_game(game_name).geometry(board_type)  # an unknown game or board fails before any file
    sink = JsonlWriter(output) if output.suffix == ".jsonl" else GameDatabase(output)
    summary = Summary("selfplay")
    with sink, progress(count, "selfplay", "game") as bar:
        for record in generate_records(game_name=game_name, board_type=board_type,
                                       num_players=num_players, agent=agent, seed=seed,
                                       count=count, simulations=simulations):
            sink.write(record)
            summary.count("games")
            summary.count("moves", len(record.moves))
            bar.update(1)
    summary.outputs.append(output)
    summary.echo()
