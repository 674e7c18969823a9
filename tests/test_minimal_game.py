"""The second worked example of docs/PLUGINS.md: a game whose actions are not cells.

Nim with one pile: take 1, 2 or 3 counters, whoever takes the last one wins. Three actions
(take k = action k - 1), one 1 x 1 "plane" holding the pile size, values from returns. It is
registered at run time and goes through validation, self-play, export and validation of
the dataset, with nothing in the pipeline knowing what a pile is."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pytest

from playstream.chunks import ChunkStore, ChunkWriter, file_stream_id
from playstream.compaction import compact
from playstream.dataset import load_npz_dataset, validate_npz_dataset
from playstream.dataset.config import encoder_scope
from playstream.errors import FeatureVersionError, IllegalMoveError
from playstream.games import (FeatureSpec, GameDefaults, Outcome, PositionPlanes, Replay,
                              register_game, unregister_game)
from playstream.games.base import ranks_from_returns, winner_of
from playstream.incremental import IncrementalExporter
from playstream.selfplay import generate_records

PILE = 7


@dataclass
class NimState:
    pile: int = PILE
    to_move: int | None = 1
    last: int | None = None  # the seat that took the last counter

    def copy(self) -> NimState:
        return NimState(self.pile, self.to_move, self.last)


class Nim(GameDefaults):
    name = "nim"
    version = "1"
    board_types = ("pile7",)
    feature_versions = ("f1",)
    value_source = "returns"

    def num_actions(self, board_type: str) -> int:
        return 3

    def player_counts(self, board_type: str) -> tuple[int, ...]:
        return (2,)

    def feature_spec(self, board_type: str, feature_version: str) -> FeatureSpec:
        if feature_version != "f1":
            raise FeatureVersionError(f"unknown feature version {feature_version!r} for game "
                                      "'nim'; known: f1")
        return FeatureSpec((), (), ("pile",), ("to_move_p1", "to_move_p2"), 1, 1,
                           frozenset({"to_move_p1", "to_move_p2"}))

    def new_state(self, board_type: str, num_players: int) -> NimState:
        return NimState()

    def legal_moves(self, state: NimState) -> np.ndarray:
        return np.arange(min(3, state.pile), dtype=np.int64) if state.to_move else \
            np.zeros(0, dtype=np.int64)

    def apply_move(self, state: NimState, move: int) -> None:
        if state.to_move is None or move not in self.legal_moves(state):
            raise IllegalMoveError(f"cannot take {move + 1} from {state.pile}", field="moves")
        state.pile -= move + 1
        state.last = state.to_move
        state.to_move = None if state.pile == 0 else 3 - state.to_move

    def outcome(self, state: NimState) -> Outcome | None:
        if state.to_move is not None:
            return None
        returns = (1.0, -1.0) if state.last == 1 else (-1.0, 1.0)
        ranks = ranks_from_returns(returns)
        return Outcome(ranks, winner_of(ranks), "last_counter", returns)

    def replay(self, board_type: str, num_players: int, moves: Sequence[int]) -> Replay:
        state, movers, states = NimState(), [], [NimState()]
        for i, move in enumerate(moves):
            movers.append(state.to_move or 0)
            try:
                self.apply_move(state, int(move))
            except IllegalMoveError as err:
                raise IllegalMoveError(err.message, field=f"moves[{i}]") from None
            states.append(state.copy())
        return Replay(board_type, num_players, np.asarray(moves, dtype=np.int64),
                      np.asarray(movers, dtype=np.int64), self.outcome(state), states)

    def _planes(self, states: Sequence[NimState]) -> PositionPlanes:
        pile = np.array([[[[s.pile / PILE]]] for s in states], dtype=np.float32)
        to_move = np.array([[s.to_move == 1, s.to_move == 2] for s in states], np.float32)
        n = len(states)
        return PositionPlanes(np.zeros((n, 2, 0, 1, 1), np.float32), pile, to_move, (),
                              ("pile",), ("to_move_p1", "to_move_p2"))

    def position_planes(self, replay: Replay, feature_version: str) -> PositionPlanes:
        return self._planes(replay.states)

    def state_planes(self, state: NimState, feature_version: str) -> PositionPlanes:
        return self._planes([state])


@pytest.fixture
def nim() -> Iterator[Nim]:
    game = Nim()
    register_game(game)
    yield game
    unregister_game(game.name)


def test_nim_plays_exports_and_validates(tmp_path: Path, nim: Nim) -> None:
    records = list(generate_records(game_name="nim", board_type="pile7", num_players=2,
                                    agent="mcts", seed=1, count=6, simulations=16))
    store = ChunkStore(tmp_path / "chunks")
    writer = ChunkWriter(store, file_stream_id(tmp_path / "nim.jsonl"), encoder_scope("f1", 1),
                         max_rows=50)
    exporter = IncrementalExporter(writer, feature_version="f1", history_length=1)
    results = [exporter.add_game(i + 1, json.loads(r.to_json_line()))
               for i, r in enumerate(records)]
    exporter.finalize()
    writer.close()
    assert [r.rows for r in results] == [len(r.moves) for r in records]
    [key] = store.config_keys()
    out = compact(store, key, tmp_path / "nim.npz").outputs[0]
    assert validate_npz_dataset(out).ok
    data = load_npz_dataset(out)
    meta = data.metadata
    assert (meta["policy_size"], meta["height"], meta["width"]) == (3, 1, 1)
    assert meta["channels"] == ["f0:pile", "f1:pile"]
    assert meta["binary_channels"] == [False, False] and meta["value_seats"] == 2
    rows = data.rows
    assert rows.policy_indices.max() <= 2  # actions, not cells
    for r in records:
        mine = rows.game_id == r.game_id
        winner = r.winner
        np.testing.assert_array_equal(rows.values[mine],
                                      np.where(rows.player[mine] == winner, 1.0, -1.0))
    first = np.flatnonzero(rows.move_number == 0)
    assert (rows.features[first, 0, 0, 0] == 1.0).all()  # the full pile
    assert (rows.features[first, 1] == 0).all()  # no history before the first move


def test_nim_records_are_checked_by_the_game(nim: Nim) -> None:
    from playstream.errors import RecordError
    from playstream.records import validate_record
    record = json.loads(next(generate_records(game_name="nim", board_type="pile7",
                                              num_players=2, agent="random", seed=2,
                                              count=1)).to_json_line())
    validate_record(record)
    with pytest.raises(RecordError) as err:
        validate_record({**record, "moves": [2, 2, 2]})  # 9 counters from a pile of 7
    assert err.value.field == "moves[2]"
    with pytest.raises(RecordError) as err:
        validate_record({**record, "returns": [0.0, 0.0]})
    assert err.value.field == "returns"
