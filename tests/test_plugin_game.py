"""The pipeline is game-agnostic: a game registered at run time goes through validation,
encoding, the chunk store and compaction exactly like the built-in one."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pytest

from playstream.chunks import ChunkStore, ChunkWriter, file_stream_id
from playstream.compaction import compact
from playstream.dataset import load_npz_dataset
from playstream.dataset.config import encoder_scope
from playstream.errors import IllegalMoveError
from playstream.games import Outcome, Replay, register_game, unregister_game
from playstream.incremental import IncrementalExporter
from test_features import VALID, TinyGame, TinyState


class FinishingTiny(TinyGame):
    """TinyGame with an outcome (everyone ties when the board is full) and rule errors."""

    name = "tinyplugin"

    def apply_move(self, state: TinyState, move: int) -> None:
        if state.to_move is None or not 0 <= move < VALID.size or state.board.flat[move] != 0:
            raise IllegalMoveError(f"cell {move} is not free", field=f"moves[{state.moves}]")
        super().apply_move(state, move)

    def outcome(self, state: TinyState) -> Outcome | None:
        if state.to_move is not None:
            return None
        return Outcome(ranks=(1,) * state.num_players, winner=None, termination="board_full")

    def replay(self, board_type: str, num_players: int, moves: Sequence[int]) -> Replay:
        state = self.new_state(board_type, num_players)
        movers = []
        for move in moves:
            movers.append(state.to_move)
            self.apply_move(state, int(move))
        return Replay(board_type, num_players, np.asarray(moves, dtype=np.int64),
                      np.asarray(movers, dtype=np.int64), self.outcome(state))


def record(i: int, moves: list[int]) -> dict:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()
    return {"game_id": f"tiny-{i}", "game": "tinyplugin", "game_version": "1",
            "board_type": "tiny", "num_players": 2, "created_at": now, "finished_at": now,
            "moves": moves, "ranks": [1, 1], "winner": None, "termination": "board_full"}


@pytest.fixture
def tiny_registered() -> Iterator[None]:
    register_game(FinishingTiny())
    yield
    unregister_game(FinishingTiny.name)


def test_a_registered_game_goes_through_the_whole_embedded_pipeline(
        tmp_path: Path, tiny_registered: None) -> None:
    orders = [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]]
    store = ChunkStore(tmp_path / "chunks")
    writer = ChunkWriter(store, file_stream_id(tmp_path / "tiny.jsonl"),
                         encoder_scope("v2", 1), max_rows=7)
    exporter = IncrementalExporter(writer, feature_version="v2", history_length=1)
    results = [exporter.add_game(i + 1, record(i, moves)) for i, moves in enumerate(orders)]
    bad = exporter.add_game(4, record(9, [0, 0, 1, 2, 3]))
    exporter.finalize()
    writer.close()
    assert [r.rows for r in results] == [5, 5, 5]
    assert bad.invalid is not None and bad.invalid.field == "moves[1]"
    key = "tinyplugin-1_tiny_2p_v2_h1"
    assert store.config_keys() == [key]
    result = compact(store, key, tmp_path / "tiny.npz")
    data = load_npz_dataset(result.outputs[0])
    rows = data.rows
    assert Counter(zip(rows.game_id.tolist(), rows.move_number.tolist())) == Counter(
        (f"tiny-{i}", m) for i in range(3) for m in range(5))
    assert data.metadata["game"] == "tinyplugin"
    assert "f1:blocked_rel1" in data.metadata["channels"]
    np.testing.assert_array_equal(rows.values, np.zeros(15, dtype=np.float32))  # all tied
    first = rows.take(np.flatnonzero((rows.game_id == "tiny-0") & (rows.move_number == 1)))
    assert first.policy_indices.tolist() == [1]  # one-hot on the move played
    ch = data.metadata["channels"].index("f0:stones_rel1")  # seat 1 seen by seat 2
    assert first.features[0, ch].tolist() == [[1, 0, 0], [0, 0, 0]]


def test_an_unregistered_game_is_a_clear_record_error() -> None:
    from playstream.errors import UnknownGameError
    from playstream.records import validate_record
    data = record(0, [0, 1, 2, 3, 4]) | {"game": "nosuchgame"}
    with pytest.raises(UnknownGameError) as info:
        validate_record(data)
    assert info.value.field == "game" and "nosuchgame" in str(info.value)
    assert "connect" in str(info.value)  # names what is registered
