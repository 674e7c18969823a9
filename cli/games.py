"""`playstream games`: every registered game and board type, with the shapes it declares."""
from __future__ import annotations

import json
from typing import Any

import click

from playstream.cli.common import reports_errors
from playstream.encoders.features import feature_layout
from playstream.games import available_games, get_game
from playstream.selfplay import agent_names


def describe_games() -> list[dict[str, Any]]:
    """One entry per (game, board type): what a trainer needs to size its network."""
    out = []
    for name in available_games():
        game = get_game(name)
        for board_type in game.board_types:
            seats = game.player_counts(board_type)
            planes = {}
            for version in game.feature_versions:
                layout = feature_layout(game, board_type, seats[0], version, 0)
                planes[version] = {"shape": list(layout.plane_shape),
                                   "globals": len(layout.global_names),
                                   "binary_channels": sum(layout.binary_channels)}
            entry: dict[str, Any] = {
                "game": name, "game_version": game.version, "board_type": board_type,
                "num_actions": game.num_actions(board_type), "seats": list(seats),
                "feature_versions": planes, "default_feature_version":
                    game.feature_versions[-1], "values": game.value_source,
                "symmetries": game.symmetries(board_type).size,
                "max_moves": game.limits(board_type).max_moves,
                "agents": list(agent_names(game, board_type))}
            game_string = getattr(game, "game_string", None)
            if callable(game_string):
                entry["game_string"] = game_string(board_type)
            out.append(entry)
    return out


@click.command("games")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@reports_errors
def games_cmd(as_json: bool) -> None:
    """List every registered game and board type: actions, plane shape (C, H, W) per feature
    version for the smallest seat count, seats, symmetries, and OpenSpiel's game string."""
    entries = describe_games()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for e in entries:
        shapes = ", ".join(f"{v}: {'x'.join(map(str, p['shape']))}"
                           for v, p in e["feature_versions"].items())
        extra = f"  openspiel: {e['game_string']}" if "game_string" in e else ""
        click.echo(f"{e['game']} {e['board_type']}: actions={e['num_actions']} "
                   f"seats={','.join(map(str, e['seats']))} planes[{shapes}] "
                   f"symmetries={e['symmetries']} values={e['values']}{extra}")
