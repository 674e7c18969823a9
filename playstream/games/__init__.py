"""Game registry: games are found by name through the ``playstream.games`` entry points."""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from playstream.errors import UnknownGameError
from playstream.games.base import BoardGeometry, Game, Outcome, PositionPlanes, Replay

__all__ = ["BoardGeometry", "Game", "Outcome", "PositionPlanes", "Replay", "get_game",
           "available_games", "register_game", "unregister_game"]

_EXTRA: dict[str, Game] = {}


def register_game(game: Game) -> None:
    """Register a game at run time (tests, notebooks); installed plugins use entry points."""
    _EXTRA[game.name] = game


def unregister_game(name: str) -> None:
    """Undo `register_game` (a test must not leave its game visible to the next one)."""
    _EXTRA.pop(name, None)


@lru_cache(maxsize=None)
def _entry_point_games() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group="playstream.games")}


def available_games() -> list[str]:
    return sorted(set(_entry_point_games()) | set(_EXTRA))


@lru_cache(maxsize=None)
def _load(name: str) -> Game:
    ep = _entry_point_games()[name]
    game = ep.load()  # type: ignore[attr-defined]
    if not isinstance(game, Game):
        raise UnknownGameError(f"entry point {ep!r} does not provide a Game", field="game")
    return game


def get_game(name: str) -> Game:
    """The game registered under ``name``; UnknownGameError (field ``game``) otherwise."""
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _entry_point_games():
        raise UnknownGameError(
            f"unknown game {name!r}; registered: {', '.join(available_games()) or 'none'}",
            field="game")
    return _load(name)
