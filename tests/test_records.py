"""Game records: round trips, and every kind of bad record rejected with its field named."""
from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from playstream.errors import IllegalMoveError, RecordError, UnknownGameError
from playstream.gamefiles import GameDatabase, JsonlWriter, open_game_source
from playstream.records import (MAX_MOVES, MAX_RECORD_BYTES, GameRecord, decode_msgpack,
                                record_from_json_line, record_from_msgpack, validate_record)
from playstream.selfplay import generate_records

BOARDS = ("square8", "square19", "hex8", "hexagonal")


def _games(board: str, players: int, agent: str, count: int = 1,
           simulations: int = 8) -> list[GameRecord]:
    return list(generate_records(board_type=board, num_players=players, agent=agent, seed=7,
                                 count=count, simulations=simulations, node="test"))


@pytest.fixture(scope="module")
def good() -> GameRecord:
    return _games("square8", 2, "mcts")[0]


def _data(record: GameRecord, **changes: Any) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    data.update(changes)
    return data


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("players", [2, 3, 4])
def test_random_games_replay_to_recorded_outcome(board: str, players: int) -> None:
    for record in _games(board, players, "random", count=2):
        again, replay = validate_record(json.loads(record.to_json_line()))
        assert again == record
        assert replay.outcome is not None
        assert replay.outcome.ranks == tuple(record.ranks)
        assert replay.outcome.winner == record.winner


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("players", [2, 3, 4])
def test_mcts_games_replay_and_carry_search(board: str, players: int) -> None:
    # Full games on every board; the big boards with a tiny budget to keep the test short.
    record = _games(board, players, "mcts", simulations=8 if board in ("square8", "hex8") else 2)[0]
    assert record.search is not None and len(record.search) == len(record.moves)
    again, replay = record_from_msgpack(record.to_msgpack())
    assert again == record
    assert replay.outcome is not None and replay.outcome.ranks == tuple(record.ranks)


def test_round_trip_through_msgpack_jsonl_and_sqlite(tmp_path, good: GameRecord) -> None:
    others = _games("hex8", 3, "random", count=2)
    records = [good, *others]
    jsonl, db = tmp_path / "g.jsonl", tmp_path / "g.db"
    with JsonlWriter(jsonl) as jw, GameDatabase(db) as dw:
        for r in records:
            jw.write(r)
            dw.write(r)
    for path in (jsonl, db):
        items = list(open_game_source(path))
        assert [i.position for i in items] == [1, 2, 3]
        assert [validate_record(i.data)[0] for i in items] == records
    assert record_from_json_line(jsonl.read_text().splitlines()[0])[0] == good
    assert record_from_msgpack(good.to_msgpack())[0] == good


def _reject(data: Any, field: str, kind: type[RecordError] = RecordError) -> RecordError:
    with pytest.raises(kind) as info:
        validate_record(data)
    assert info.value.field == field, str(info.value)
    assert field in str(info.value)
    return info.value


def test_wrong_types_name_the_field(good: GameRecord) -> None:
    _reject(_data(good, moves="1,2,3"), "moves")
    _reject(_data(good, num_players="two"), "num_players")
    _reject(_data(good, moves=[1, 2, "x"]), "moves[2]")
    _reject(_data(good, winner=1.5), "winner")
    _reject(["not", "a", "map"], "record")
    _reject(_data(good, created_at="yesterday"), "created_at")
    _reject(_data(good, unexpected=1), "unexpected")


def test_num_players_out_of_range(good: GameRecord) -> None:
    for n in (0, 9):
        err = _reject(_data(good, num_players=n), "num_players")
        assert err.game_id == good.game_id


def test_unknown_game_and_board(good: GameRecord) -> None:
    _reject(_data(good, game="chess"), "game", UnknownGameError)
    _reject(_data(good, board_type="square9"), "board_type")


def test_illegal_and_out_of_range_moves(good: GameRecord) -> None:
    moves = list(good.moves)
    dup = moves[:3] + [moves[0]] + moves[4:]
    err = _reject(_data(good, moves=dup), "moves[3]", IllegalMoveError)
    assert "occupied" in err.message
    _reject(_data(good, moves=moves[:5] + [64] + moves[6:]), "moves[5]", IllegalMoveError)
    hex_game = _games("hex8", 2, "random")[0]
    corner = 0  # (q, r) = (-4, -4) is off the hexagon
    _reject(_data(hex_game, moves=[corner] + list(hex_game.moves[1:])), "moves[0]",
            IllegalMoveError)
    _reject(_data(good, moves=moves + [next(c for c in range(64) if c not in moves)],
                  search=None), f"moves[{len(moves)}]", IllegalMoveError)


def test_outcome_that_disagrees_with_moves(good: GameRecord) -> None:
    other = 2 if good.winner == 1 else 1
    _reject(_data(good, winner=other), "winner")
    _reject(_data(good, ranks=list(reversed(good.ranks))), "ranks")
    _reject(_data(good, termination="resigned"), "termination")
    _reject(_data(good, moves=good.moves[:-1], search=None), "moves")


def test_bad_probabilities(good: GameRecord) -> None:
    search = [s.model_dump() if s else None for s in good.search or []]
    i = next(k for k, s in enumerate(search) if s and len(s["policy_probs"]) > 1)
    neg = [dict(s) if s else None for s in search]
    probs = list(neg[i]["policy_probs"])
    probs[0], probs[1] = -0.25, probs[1] + probs[0] + 0.25
    neg[i]["policy_probs"] = probs
    _reject(_data(good, search=neg), f"search[{i}].policy_probs")
    off = [dict(s) if s else None for s in search]
    off[i]["policy_probs"] = [p * 0.9 for p in off[i]["policy_probs"]]
    err = _reject(_data(good, search=off), f"search[{i}].policy_probs")
    assert "sum" in err.message
    short = [dict(s) if s else None for s in search]
    short[i]["policy_indices"] = short[i]["policy_indices"][:-1]
    _reject(_data(good, search=short), f"search[{i}].policy_probs")


def test_search_naming_an_illegal_move(good: GameRecord) -> None:
    search = [s.model_dump() if s else None for s in good.search or []]
    search[1] = {"policy_indices": [good.moves[0]], "policy_probs": [1.0], "root_value": 0.0}
    _reject(_data(good, search=search), "search[1].policy_indices")


def test_limits_are_enforced(good: GameRecord) -> None:
    with pytest.raises(RecordError) as info:
        decode_msgpack(b"\x00" * (MAX_RECORD_BYTES + 1))
    assert info.value.field == "record" and "limit" in info.value.message
    _reject(_data(good, moves=[0] * (MAX_MOVES + 1)), "moves")


@pytest.mark.parametrize("payload", [b"", b"\xc1", b"\x92\x01", msgpack.packb({1: 2}),
                                     b"\xdd\xff\xff\xff\xff"])
def test_garbage_bytes_never_crash(payload: bytes) -> None:
    with pytest.raises(RecordError) as info:
        record_from_msgpack(payload)
    assert info.value.field == "record"


def test_garbage_jsonl_lines_are_reported_with_line_numbers(tmp_path, good: GameRecord) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(good.to_json_line() + "\n{not json\n\n" + '{"game_id": 3}\n')
    items = list(open_game_source(path))
    assert [i.position for i in items] == [1, 2, 4]
    assert items[0].error is None
    assert items[1].error is not None and items[1].error.context["line"] == 2
    with pytest.raises(RecordError) as info:
        validate_record(items[2].data)
    assert info.value.field == "game_id"
