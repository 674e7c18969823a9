"""OpenSpiel games end to end, checked against pyspiel itself: the CLI plays them (random
and OpenSpiel's MCTS), exports them, and the dataset must hold OpenSpiel's own action count,
observation tensors, visit distributions and returns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyspiel
import pytest

from playstream.dataset import load_npz_dataset
from test_export_cli import run

CASES = [  # (board type, agent, games, MCTS simulations)
    ("tic_tac_toe", "random", 3, 4), ("tic_tac_toe", "mcts", 2, 8),
    ("connect_four", "random", 2, 4), ("connect_four", "mcts", 1, 8),
    ("hex(board_size=7)", "random", 2, 4), ("hex(board_size=7)", "mcts", 1, 4),
    ("breakthrough(rows=6,columns=6)", "random", 2, 4),
    ("breakthrough(rows=6,columns=6)", "mcts", 1, 2),
    ("go(board_size=9)", "random", 1, 4), ("go(board_size=9)", "mcts", 1, 2),
    ("othello", "random", 2, 4), ("othello", "mcts", 1, 4),
    ("chess", "random", 1, 4), ("chess", "mcts", 1, 2),
    ("pig(winscore=20)", "random", 3, 4), ("pig(winscore=20)", "mcts", 1, 4),
]


@pytest.mark.parametrize("board_type, agent, games, simulations", CASES)
def test_selfplay_export_matches_pyspiel(tmp_path: Path, board_type: str, agent: str,
                                         games: int, simulations: int) -> None:
    jsonl = tmp_path / "g.jsonl"
    run("selfplay", "--game", "openspiel", "--board-type", board_type, "--agent", agent,
        "--games", games, "--simulations", simulations, "--output", jsonl, "--no-progress")
    out = tmp_path / "d.npz"
    run("export", "--game", "openspiel", "--board-type", board_type, "--num-players", 2,
        "--jsonl", jsonl, "--history-length", 0, "--output", out, "--no-progress")
    run("validate", out)
    data = load_npz_dataset(out)
    meta = data.metadata
    game = pyspiel.load_game(board_type)
    shape = tuple(game.observation_tensor_shape())
    assert meta["policy_size"] == game.num_distinct_actions()
    c = shape[0]
    assert (len(meta["channels"]), meta["height"] * meta["width"]) == (c, int(np.prod(shape[1:])))
    assert data.rows.values_mp.shape[1] == 2 and meta["value_seats"] == 2
    binary = np.asarray(meta["binary_channels"])
    assert binary.shape == (c,)
    flat = data.rows.features.reshape(len(data.rows), c, -1)
    assert np.isin(flat[:, binary], (0.0, 1.0)).all()  # declared binary: only 0 and 1 seen
    if board_type == "chess":
        assert binary.tolist().count(False) == 2 and not binary[13] and not binary[15]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    by_game = {r["game_id"]: r for r in records}
    rows = data.rows
    seen = 0
    for gid, record in by_game.items():
        state = game.new_initial_state()
        expected_rows = {}
        for t, move in enumerate(record["moves"]):
            if not state.is_chance_node():
                expected_rows[t] = (state.current_player(),
                                    np.asarray(state.observation_tensor(state.current_player()),
                                               np.float32))
            state.apply_action(move)
        assert state.is_terminal()
        returns = state.returns()
        assert record["returns"] == returns
        mine = np.flatnonzero(rows.game_id == gid)
        assert sorted(rows.move_number[mine].tolist()) == sorted(expected_rows)  # no chance rows
        for r in mine:
            t = int(rows.move_number[r])
            mover, obs = expected_rows[t]
            assert rows.player[r] == mover + 1
            np.testing.assert_array_equal(rows.features[r].reshape(-1), obs)
            assert rows.values[r] == pytest.approx(returns[mover])
            np.testing.assert_allclose(rows.values_mp[r], returns)
            lo, hi = rows.policy_indptr[r], rows.policy_indptr[r + 1]
            got = dict(zip(rows.policy_indices[lo:hi].tolist(),
                           rows.policy_values[lo:hi].tolist()))
            search = record["search"][t] if record["search"] else None
            if search is None:
                assert got == {record["moves"][t]: 1.0}
            else:
                want = dict(zip(search["policy_indices"], search["policy_probs"]))
                assert got.keys() == want.keys()
                np.testing.assert_allclose([got[k] for k in want], list(want.values()),
                                           rtol=1e-6)
                # (the bot's best_child may be an unvisited move when every visited one
                # is a proven loss, so the move played need not be in the target)
            seen += 1
    assert seen == len(rows) > 0
    if agent == "mcts":
        assert any(s is not None for r in records for s in r["search"])
        # visit shares are multiples of 1 / (simulations - 1): the bot's own counts
        first = next(s for s in records[0]["search"] if s is not None)
        np.testing.assert_allclose(np.asarray(first["policy_probs"]) * (simulations - 1),
                                   np.round(np.asarray(first["policy_probs"])
                                            * (simulations - 1)), atol=1e-6)


def test_games_command_lists_openspiel_shapes() -> None:
    entries = json.loads(run("games", "--json").stdout)
    by_board = {(e["game"], e["board_type"]): e for e in entries}
    for board_type in SYMMETRIC:
        entry = by_board[("openspiel", board_type)]
        game = pyspiel.load_game(board_type)
        shape = list(game.observation_tensor_shape())
        while len(shape) < 3:
            shape.insert(1, 1)
        assert entry["num_actions"] == game.num_distinct_actions()
        assert entry["feature_versions"]["obs"]["shape"] == shape
        assert entry["seats"] == [2] and entry["symmetries"] == SYMMETRIC[board_type]
        assert entry["game_string"] == str(game)
    assert by_board[("connect", "square8")]["feature_versions"]["v2"]["shape"] == [6, 8, 8]
    assert "go(board_size=9)" in run("games").stdout


def test_pig_records_hold_chance_moves() -> None:
    from playstream.games import CHANCE, get_game
    from playstream.selfplay import generate_records
    record = next(generate_records(game_name="openspiel", board_type="pig(winscore=20)",
                                   num_players=2, agent="random", seed=3, count=1))
    replay = get_game("openspiel").replay(record.board_type, 2, record.moves)
    assert (replay.movers == CHANCE).sum() > 0
    assert replay.outcome is not None and replay.outcome.returns == tuple(record.returns or ())


def test_board_types_are_an_allow_list() -> None:
    from playstream.errors import RecordError
    from playstream.records import validate_record
    record = {"game_id": "x", "game": "openspiel", "game_version": "1",
              "board_type": "kuhn_poker", "num_players": 2,
              "created_at": "2026-01-01T00:00:00+00:00",
              "finished_at": "2026-01-01T00:00:00+00:00", "moves": [], "ranks": [1, 1],
              "winner": None, "termination": "terminal"}
    with pytest.raises(RecordError) as err:
        validate_record(record)
    assert err.value.field == "board_type"


SYMMETRIC = {"tic_tac_toe": 8, "connect_four": 2, "hex(board_size=7)": 2,
             "breakthrough(rows=6,columns=6)": 2, "go(board_size=9)": 8, "othello": 4,
             "chess": 1, "pig(winscore=20)": 1}


@pytest.mark.parametrize("board_type", SYMMETRIC)
def test_symmetries_agree_with_pyspiel(board_type: str) -> None:
    """Playing the transformed moves in pyspiel gives the transformed observation: new
    planes[i] = old[cells[i]], new policy[a] = old[actions[a]], so move m becomes the a with
    actions[a] == m."""
    from playstream.games import get_game
    symmetries = get_game("openspiel").symmetries(board_type)
    assert symmetries.size == SYMMETRIC[board_type]
    game = pyspiel.load_game(board_type)
    assert symmetries.actions.shape[1] == game.num_distinct_actions()
    if symmetries.size == 1:
        return  # the identity only (checked by Symmetries itself)
    c = game.observation_tensor_shape()[0]
    rng = np.random.default_rng(5)
    for k in range(symmetries.size):
        inverse = np.argsort(symmetries.actions[k])
        for _ in range(3):
            state, mirrored = game.new_initial_state(), game.new_initial_state()
            for _ in range(int(rng.integers(1, 12))):
                if state.is_terminal():
                    break
                move = int(rng.choice(state.legal_actions()))
                assert int(inverse[move]) in mirrored.legal_actions()
                state.apply_action(move)
                mirrored.apply_action(int(inverse[move]))
            old = np.asarray(state.observation_tensor(0)).reshape(c, -1)
            new = np.asarray(mirrored.observation_tensor(0)).reshape(c, -1)
            channels = (np.arange(c) if symmetries.channels is None
                        else symmetries.channels[k])
            np.testing.assert_array_equal(new, old[channels][:, symmetries.cells[k]],
                                          err_msg=symmetries.names[k])
