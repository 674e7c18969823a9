"""ExportCache: a game is encoded once per encoder setting, and a damaged entry is redone."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from playstream.dataset import RowBatch
from playstream.encoders.cache import ExportCache
from playstream.encoders.rows import encode_game_rows
from playstream.encoders.versions import ExportSettings
from playstream.games import get_game
from playstream.records import validate_record
from playstream.selfplay import generate_records


def test_get_or_compute_encodes_once_per_setting(tmp_path: Path) -> None:
    record = next(generate_records(board_type="hex8", num_players=3, agent="mcts", seed=1,
                                   count=1, simulations=4, node="c"))
    _, replay = validate_record(record.model_dump(mode="json"))
    game = get_game("connect")
    calls: list[str] = []

    def compute(settings: ExportSettings):  # type: ignore[no-untyped-def]
        def run() -> RowBatch:
            calls.append(settings.feature_version)
            search = [(s.policy_indices, s.policy_probs, s.root_value) if s else None
                      for s in record.search or []]
            return encode_game_rows(game, replay, search, settings, record.game_id)
        return run

    cache = ExportCache(tmp_path / "cache")
    v2 = ExportSettings(board_type="hex8", num_players=3, feature_version="v2")
    v1 = ExportSettings(board_type="hex8", num_players=3, feature_version="v1")
    first = cache.get_or_compute(record, v2, compute(v2))
    again = cache.get_or_compute(record, v2, compute(v2))
    other = cache.get_or_compute(record, v1, compute(v1))
    assert calls == ["v2", "v1"] and (cache.hits, cache.misses) == (1, 2)
    np.testing.assert_array_equal(first.features, again.features)
    np.testing.assert_array_equal(first.policy_values, again.policy_values)
    assert other.features.shape[1] < first.features.shape[1]
    entry = tmp_path / "cache" / f"{cache.key(record, v2)}.npz"
    entry.write_bytes(entry.read_bytes()[:500])  # damaged: recomputed, not trusted
    redone = cache.get_or_compute(record, v2, compute(v2))
    assert calls == ["v2", "v1", "v2"]
    np.testing.assert_array_equal(redone.features, first.features)
