"""The built-in connect game is one plugin among others: no module outside its folder names
its boards or reaches for its grid, and every registered game implements contract 2."""
from __future__ import annotations

import re
from pathlib import Path

from playstream.games import CONTRACT_VERSION, Game, available_games, get_game

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("playstream", "cli", "producers", "streams", "consumers", "plugins")
CONNECT = ROOT / "playstream" / "games" / "connect"
# Its board names, and the connect-only grid API (`geometry`, `BoardGeometry`, `valid` mask).
CONNECT_ONLY = re.compile(r"\b(square8|square19|hex8|hexagonal|BoardGeometry|geometry\(|"
                          r"\.valid\b|policy_index = row)")


def test_no_module_outside_connect_knows_connect() -> None:
    hits = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if CONNECT in path.parents:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if CONNECT_ONLY.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert hits == []


def test_the_checker_would_see_a_board_name(tmp_path: Path) -> None:
    assert CONNECT_ONLY.search('default="square8"')
    assert CONNECT_ONLY.search("game.geometry(board_type).valid")
    assert not CONNECT_ONLY.search("game.num_actions(board_type)")


def test_every_registered_game_implements_this_contract() -> None:
    for name in available_games():
        game = get_game(name)
        assert isinstance(game, Game) and game.contract_version == CONTRACT_VERSION
        for board_type in game.board_types:
            assert game.num_actions(board_type) >= 1
            assert all(1 <= n <= 8 for n in game.player_counts(board_type))
            symmetries = game.symmetries(board_type)
            assert symmetries.actions.shape[1] == game.num_actions(board_type)
