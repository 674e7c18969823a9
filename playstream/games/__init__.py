"""Game registry: games are found by name through the ``playstream.games`` entry points."""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from playstream.errors import UnknownGameError
from playstream.games.base import (CHANCE, CONTRACT_VERSION, MAX_SEATS, FeatureSpec, Game,
                                   GameDefaults, GameLimits, Outcome, PositionPlanes, Replay)
from playstream.games.symmetry import Symmetries

__all__ = ["CHANCE", "CONTRACT_VERSION", "MAX_SEATS", "FeatureSpec", "Game", "GameDefaults",
           "GameLimits", "Outcome", "PositionPlanes", "Replay", "Symmetries", "get_game",
           "available_games", "register_game", "unregister_game"]

_EXTRA: dict[str, Game] = {}


def _check_contract(game: object, origin: str) -> Game:
    """A game must implement this contract version: an older plugin fails here, by name,
    instead of deep inside an export."""
    if not isinstance(game, Game):
        raise UnknownGameError(f"{origin} does not provide a Game (contract version "
                               f"{CONTRACT_VERSION})", field="game")
    if game.contract_version != CONTRACT_VERSION:
        raise UnknownGameError(f"{origin} implements game contract version "
                               f"{game.contract_version}, this playstream needs "
                               f"{CONTRACT_VERSION}", field="game")
    return game


def register_game(game: Game) -> None:
    """Register a game at run time (tests, notebooks); installed plugins use entry points."""
    _EXTRA[game.name] = _check_contract(game, f"game {getattr(game, 'name', game)!r}")


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
    return _check_contract(ep.load(), f"entry point {ep!r}")  # type: ignore[attr-defined]


def get_game(name: str) -> Game:
    """The game registered under ``name``; UnknownGameError (field ``game``) otherwise."""
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _entry_point_games():
        raise UnknownGameError(
            f"unknown game {name!r}; registered: {', '.join(available_games()) or 'none'}",
            field="game")
    return _load(name)
