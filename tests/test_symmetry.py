"""Connect's symmetry groups: each transform maps the encoding of a position to the encoding
of the transformed position. Every move of a real game is moved through the action gather,
the transformed game is replayed and encoded by the normal encoders, and its planes, policy
and globals are compared with the transform applied to the original encoding."""
from __future__ import annotations

import numpy as np
import pytest

from playstream.encoders import ExportSettings, encode_game_rows
from playstream.games import get_game
from playstream.games.symmetry import Symmetries
from playstream.selfplay.generate import generate_records
from playstream.training.collate import (augment_dense_policy, augment_features,
                                         augment_sparse_policy)

GAME = get_game("connect")


def transformed_search(search: list | None, forward: np.ndarray) -> list | None:
    if search is None:
        return None
    return [None if s is None else (forward[np.asarray(s[0])].tolist(), s[1], s[2])
            for s in search]


@pytest.mark.parametrize("board_type, size, agent", [
    ("square8", 8, "mcts"), ("square19", 8, "random"), ("hex8", 12, "mcts"),
    ("hexagonal", 12, "random")])
def test_each_transform_maps_an_encoding_to_the_encoding_of_the_transformed_game(
        board_type: str, size: int, agent: str) -> None:
    sym = GAME.symmetries(board_type)
    assert isinstance(sym, Symmetries) and sym.size == size
    geometry = GAME.geometry(board_type)
    settings = ExportSettings(board_type=board_type, num_players=2, feature_version="v2",
                              history_length=2)
    record = next(generate_records(board_type=board_type, num_players=2, agent=agent, seed=3,
                                   count=1, simulations=8, node="test"))
    search = None if record.search is None else [
        None if s is None else (s.policy_indices, s.policy_probs, s.root_value)
        for s in record.search]
    original = encode_game_rows(GAME, GAME.replay(board_type, 2, record.moves), search,
                                settings, record.game_id)
    dense = original.dense_policy(geometry.policy_size)
    rows = len(original)
    assert rows > 5
    for k in range(sym.size):
        forward = np.argsort(sym.actions[k])  # old action -> the action it becomes
        moves = forward[np.asarray(record.moves)].tolist()
        replay = GAME.replay(board_type, 2, moves)
        assert replay.outcome == GAME.replay(board_type, 2, record.moves).outcome
        encoded = encode_game_rows(GAME, replay, transformed_search(search, forward), settings,
                                   record.game_id)
        chosen = np.full(rows, k)
        np.testing.assert_array_equal(augment_features(original.features, sym, chosen),
                                      encoded.features, err_msg=sym.names[k])
        np.testing.assert_array_equal(augment_dense_policy(dense, sym, chosen),
                                      encoded.dense_policy(geometry.policy_size),
                                      err_msg=sym.names[k])
        indices, values = augment_sparse_policy(original.policy_indptr,
                                                original.policy_indices,
                                                original.policy_values, sym, chosen)
        np.testing.assert_array_equal(indices, encoded.policy_indices)
        np.testing.assert_array_equal(values, encoded.policy_values)
        np.testing.assert_array_equal(original.globals, encoded.globals)
        # On-board cells stay on the board: the board mask plane is invariant.
        assert (geometry.valid.ravel()[sym.cells[k]] == geometry.valid.ravel()).all()


@pytest.mark.parametrize("board_type", ["square8", "hex8"])
def test_the_group_is_closed_and_distinct(board_type: str) -> None:
    sym = GAME.symmetries(board_type)
    rows = {tuple(c) for c in sym.cells.tolist()}
    assert len(rows) == sym.size
    for a in range(sym.size):
        for b in range(sym.size):
            # Applying gather a, then gather b, is again one of the group's gathers.
            assert tuple(sym.cells[a][sym.cells[b]].tolist()) in rows


def test_a_mixed_batch_applies_each_rows_own_transform() -> None:
    sym = GAME.symmetries("hex8")
    rng = np.random.default_rng(0)
    features = rng.random((5, 3, 9, 9)).astype(np.float32)
    chosen = np.array([0, 3, 7, 11, 3])
    got = augment_features(features, sym, chosen)
    for j, k in enumerate(chosen):
        np.testing.assert_array_equal(got[j], augment_features(features[j:j + 1], sym,
                                                               np.array([k]))[0])
    np.testing.assert_array_equal(got[0], features[0])
