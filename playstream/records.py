"""The game record: the one contract between self-play, the bus and the encoders.

A record is checked in two layers. `GameRecord` (pydantic) checks shape, types and ranges;
`validate_record` then replays the moves with the registered game and checks that every move
is legal, that search statistics only name legal moves, and that the recorded outcome is the
one the moves produce. Both layers report a `RecordError` naming the field, never another
exception, and never repair a record.
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import msgpack
import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      field_validator, model_validator)

from playstream.digests import DIGEST_BYTES
from playstream.errors import PlaystreamError, RecordError
from playstream.games import CHANCE, MAX_SEATS, Game, Outcome, Replay, get_game
from playstream.games.base import MAX_MOVES, MAX_SEARCH_ENTRIES

SCHEMA_VERSION: Literal[2] = 2
"""Version 2 (this contract): 1..8 seats, chance moves in ``moves`` (the game's CHANCE
mover), optional ``returns``, per-game limits. Version 1 records (2..4 seats, no chance,
no returns) still read: they mean the same under version 2."""
MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_POLICY_ENTRIES = MAX_SEARCH_ENTRIES
MAX_SETTINGS = 32
PROBABILITY_TOLERANCE = 1e-3

class _FieldValueError(ValueError):
    """A cross-field check failure that knows which field to blame (pydantic would report a
    model-level error without a field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


SafeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")]
ShortText = Annotated[str, StringConstraints(max_length=256)]
SettingValue = bool | int | float | Annotated[str, StringConstraints(max_length=256)]


class Source(BaseModel):
    """Who produced the game: the node, the worker and the agent with its settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: ShortText = "unknown"
    worker: ShortText = "0"
    agent: ShortText = "unknown"
    settings: dict[ShortText, SettingValue] = Field(default_factory=dict, max_length=MAX_SETTINGS)


class MoveSearch(BaseModel):
    """The recorded root statistics of the search that chose one move (the ``search`` list of
    a record): the soft policy target and the root value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_indices: list[Annotated[int, Field(ge=0)]] = Field(min_length=1,
                                                               max_length=MAX_POLICY_ENTRIES)
    policy_probs: list[float] = Field(min_length=1, max_length=MAX_POLICY_ENTRIES)
    root_value: float | None = Field(default=None, ge=-1.0, le=1.0)

    @model_validator(mode="after")
    def _distribution(self) -> "MoveSearch":
        if len(self.policy_indices) != len(self.policy_probs):
            raise _FieldValueError("policy_probs",
                                   f"policy_indices has {len(self.policy_indices)} entries but "
                                   f"policy_probs has {len(self.policy_probs)}")
        if len(set(self.policy_indices)) != len(self.policy_indices):
            raise _FieldValueError("policy_indices", "policy_indices repeats an index")
        probs = self.policy_probs
        if any(not math.isfinite(p) or p < 0 for p in probs):
            raise _FieldValueError("policy_probs", "policy_probs must be finite and non-negative")
        total = math.fsum(probs)
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            raise _FieldValueError("policy_probs", f"policy_probs sum to {total:.6f}, not 1 "
                                   f"within {PROBABILITY_TOLERANCE}")
        return self


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (UTC)")
    return value.astimezone(timezone.utc)


class GameRecord(BaseModel):
    """One finished game. On disk one JSON line, on the wire one msgpack map.

    The seed's JSONL shape is kept: ``{"game_id", "board_type", "num_players", "winner",
    "moves": [...], ...}``. ``search`` is either absent or parallel to ``moves``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    game_id: SafeId
    game: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "connect"
    game_version: Annotated[str, StringConstraints(max_length=32)] = "1"
    board_type: Annotated[str, StringConstraints(max_length=64)]
    num_players: Annotated[int, Field(ge=1, le=MAX_SEATS)]
    seed: int | None = None
    created_at: datetime
    finished_at: datetime
    source: Source = Field(default_factory=Source)
    moves: list[Annotated[int, Field(ge=0)]] = Field(max_length=MAX_MOVES)
    search: list[MoveSearch | None] | None = Field(default=None, max_length=MAX_MOVES)
    ranks: list[Annotated[int, Field(ge=1, le=MAX_SEATS)]] = Field(min_length=1,
                                                                    max_length=MAX_SEATS)
    winner: Annotated[int, Field(ge=1, le=MAX_SEATS)] | None
    termination: Annotated[str, StringConstraints(max_length=64)]
    returns: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, max_length=MAX_SEATS)

    _check_created = field_validator("created_at", "finished_at")(_utc)

    @model_validator(mode="after")
    def _consistent(self) -> "GameRecord":
        if self.finished_at < self.created_at:
            raise _FieldValueError("finished_at", "finished_at is before created_at")
        if len(self.ranks) != self.num_players:
            raise _FieldValueError("ranks", f"ranks has {len(self.ranks)} entries for "
                                   f"{self.num_players} players")
        if self.returns is not None and len(self.returns) != self.num_players:
            raise _FieldValueError("returns", f"returns has {len(self.returns)} entries for "
                                   f"{self.num_players} players")
        if self.schema_version == 1 and (self.num_players > 4 or self.returns is not None):
            raise _FieldValueError("schema_version", "schema version 1 has 2..4 players and "
                                   "no returns")
        if self.search is not None and len(self.search) != len(self.moves):
            raise _FieldValueError("search", f"search has {len(self.search)} entries for "
                                   f"{len(self.moves)} moves")
        return self

    def outcome(self) -> Outcome:
        returns = None if self.returns is None else tuple(self.returns)
        return Outcome(ranks=tuple(self.ranks), winner=self.winner, termination=self.termination,
                       returns=returns)

    def moves_digest(self) -> bytes:
        """16 bytes of blake2b over (game, board_type, num_players, moves): the same game
        played twice (two workers with one seed, a copied file) has one digest under any
        game_id, so duplicates are counted in bounded memory (16 bytes a game)."""
        key = json.dumps([self.game, self.board_type, self.num_players, self.moves],
                         separators=(",", ":"))
        return hashlib.blake2b(key.encode(), digest_size=DIGEST_BYTES).digest()

    def to_json_line(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=False),
                          separators=(",", ":"), sort_keys=False)

    def to_msgpack(self) -> bytes:
        return msgpack.packb(self.model_dump(mode="json"), use_bin_type=True)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "record"


def _from_validation_error(err: ValidationError, game_id: str | None, **ctx: Any) -> RecordError:
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if p not in ("function-after",))
    message = first["msg"]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, _FieldValueError):
        loc, message = (*loc, cause.field), str(cause)
    return RecordError(message, field=_field_path(loc), game_id=game_id,
                       errors=len(err.errors()), **ctx)


def parse_record(data: Any, **ctx: Any) -> GameRecord:
    """Shape-check a decoded mapping (layer 1). Raises RecordError naming the field."""
    if not isinstance(data, dict):
        raise RecordError(f"a record must be a map, got {type(data).__name__}", field="record",
                          **ctx)
    game_id = data.get("game_id") if isinstance(data.get("game_id"), str) else None
    if game_id is not None and len(game_id) > 128:
        game_id = game_id[:32] + "..."
    try:
        return GameRecord.model_validate(data)
    except ValidationError as err:
        raise _from_validation_error(err, game_id, **ctx) from None


def check_rules(record: GameRecord, game: Game | None = None) -> Replay:
    """Replay the record with its game (layer 2) and return the replay.

    Raises RecordError naming the field: an unknown game or board, an illegal move, search
    statistics that name illegal moves, or an outcome that disagrees with the moves.
    """
    gid = record.game_id
    if game is None:
        try:
            game = get_game(record.game)
        except RecordError as err:
            raise type(err)(err.message, field=err.field, game_id=gid) from None
    if record.game_version != game.version:
        raise RecordError(f"game {record.game!r} is version {game.version}, record says "
                          f"{record.game_version}", field="game_version", game_id=gid)
    if record.board_type not in game.board_types:
        raise RecordError(f"unknown board_type {record.board_type!r} for game {record.game!r}; "
                          f"known: {', '.join(game.board_types)}", field="board_type",
                          game_id=gid)
    counts = game.player_counts(record.board_type)
    if record.num_players not in counts:
        raise RecordError(f"{record.game} {record.board_type} is played by "
                          f"{', '.join(map(str, counts))} players, not {record.num_players}",
                          field="num_players", game_id=gid)
    limits = game.limits(record.board_type)
    if len(record.moves) > limits.max_moves:
        raise RecordError(f"{len(record.moves)} moves, more than the game's limit "
                          f"{limits.max_moves}", field="moves", game_id=gid)
    if record.search is not None:
        for i, stats in enumerate(record.search):
            if stats is not None and len(stats.policy_indices) > limits.max_search_entries:
                raise RecordError(f"{len(stats.policy_indices)} search entries, more than "
                                  f"the game's limit {limits.max_search_entries}",
                                  field=f"search[{i}].policy_indices", game_id=gid)
    try:
        replay = game.replay(record.board_type, record.num_players, record.moves)
    except RecordError as err:
        raise type(err)(err.message, field=err.field or "moves", game_id=gid) from None
    if replay.outcome is None:
        raise RecordError(f"the game is not over after {len(record.moves)} moves",
                          field="moves", game_id=gid)
    expected = replay.outcome
    names = ("ranks", "winner", "termination") + (
        ("returns",) if game.value_source == "returns" else ())
    for name in names:
        got = record.outcome() if name in ("ranks", "returns") else record
        got = getattr(got, name)
        want = getattr(expected, name)
        if got != want:
            raise RecordError(f"recorded {name} {got!r} disagrees with the moves, which give "
                              f"{want!r}", field=name, game_id=gid)
    if record.search is not None:
        chance = np.flatnonzero(replay.movers == CHANCE)
        searched = [int(t) for t in chance if record.search[int(t)] is not None]
        if searched:
            raise RecordError("a chance move has search statistics (chance moves have no "
                              "policy target)", field=f"search[{searched[0]}]", game_id=gid)
        _check_search_legal(record, game)
    return replay


def _check_search_legal(record: GameRecord, game: Game) -> None:
    """Every visited index must be legal where it was searched: otherwise the soft target
    teaches moves the rules forbid."""
    assert record.search is not None
    state = game.new_state(record.board_type, record.num_players)
    for i, (move, stats) in enumerate(zip(record.moves, record.search)):
        if stats is not None:
            legal = game.legal_moves(state)
            visited = np.asarray(stats.policy_indices, dtype=np.int64)
            bad = visited[~np.isin(visited, legal)]
            if bad.size:
                raise RecordError(f"policy index {int(bad[0])} is not a legal move here",
                                  field=f"search[{i}].policy_indices", game_id=record.game_id)
        game.apply_move(state, move)


def validate_record(data: Any, **ctx: Any) -> tuple[GameRecord, Replay]:
    """Both layers. Any failure is a RecordError; nothing else escapes (a game plugin that
    raises something unexpected is reported as a RecordError too, with its type named)."""
    record = parse_record(data, **ctx)
    try:
        return record, check_rules(record)
    except RecordError as err:
        if ctx:
            raise type(err)(err.message, field=err.field, game_id=err.game_id, **ctx) from None
        raise
    except PlaystreamError as err:
        raise RecordError(str(err), field="record", game_id=record.game_id, **ctx) from None
    except Exception as err:  # a plugin bug must not crash the caller's stream
        raise RecordError(f"game engine failed: {type(err).__name__}: {err}", field="moves",
                          game_id=record.game_id, **ctx) from None


def decode_msgpack(payload: bytes, **ctx: Any) -> dict[str, Any]:
    """Bytes from the bus to a mapping, bounded in size; garbage gives a RecordError."""
    if len(payload) > MAX_RECORD_BYTES:
        raise RecordError(f"record is {len(payload)} bytes, limit {MAX_RECORD_BYTES}",
                          field="record", **ctx)
    try:
        data = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as err:  # msgpack raises several unrelated types on garbage
        raise RecordError(f"not a msgpack record: {type(err).__name__}: {err}", field="record",
                          **ctx) from None
    return data


def decode_json_line(text: str | bytes, **ctx: Any) -> dict[str, Any]:
    """One JSONL line to a mapping, bounded in size; garbage gives a RecordError."""
    if len(text) > MAX_RECORD_BYTES:
        raise RecordError(f"line is {len(text)} bytes, limit {MAX_RECORD_BYTES}",
                          field="record", **ctx)
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise RecordError(f"not a JSON record: {err}", field="record", **ctx) from None


def record_from_msgpack(payload: bytes, **ctx: Any) -> tuple[GameRecord, Replay]:
    return validate_record(decode_msgpack(payload, **ctx), **ctx)


def record_from_json_line(text: str | bytes, **ctx: Any) -> tuple[GameRecord, Replay]:
    return validate_record(decode_json_line(text, **ctx), **ctx)
