"""StreamProcessor without Kafka: a fake log per partition, a fake clock, a real chunk store.

The property under test is the processor's contract: whatever the sequence of assignments,
revocations, crashes (the object dropped without close) and redeliveries, the sealed ranges
of each configuration never overlap and together hold every offset of a valid game, and the
rows of every valid game appear exactly once across the sealed chunks. Plus failures, and
the dead-letter and announcement formats.
"""
from __future__ import annotations

import gc
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import msgpack
import numpy as np
import pytest

from playstream.chunks import ChunkStore, SealedChunk, topic_stream_id
from playstream.chunks import writer as writer_module
from playstream.dataset import load_npz_dataset, read_metadata
from playstream.encoders.rows import encode_game_rows
from playstream.encoders.versions import ExportSettings
from playstream.errors import ChunkError, RecordError
from playstream.games import get_game
from playstream.records import MAX_RECORD_BYTES, GameRecord
from playstream.selfplay import generate_records
from playstream.streams import (DeadLetter, StreamProcessor, announcement_for,
                                decode_announcement, decode_dead_letter, encode_announcement,
                                encode_dead_letter)
from playstream.streams import deadletter as dlq

TOPIC = "games"
FEATURE_VERSION, HISTORY = "v1", 0  # the cheapest encoder: this file is about bookkeeping
MAX_AGE = 10.0


@dataclass
class Entry:
    """One message of the fake log: its bytes (None: a tombstone) and, for a valid game,
    the record."""

    payload: bytes | None
    key: bytes | None
    record: GameRecord | None


Log = dict[int, list[Entry]]


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sinks:
    letters: list[DeadLetter] = field(default_factory=list)
    announced: list[SealedChunk] = field(default_factory=list)


def entry(record: GameRecord) -> Entry:
    return Entry(record.to_msgpack(), record.game_id.encode(), record)


@pytest.fixture(scope="module")
def records() -> list[GameRecord]:
    """Two configurations (hex8 with 2 and 3 players), so chunks seal in groups of two."""
    two = generate_records(board_type="hex8", num_players=2, agent="random", seed=11,
                           count=24, node="t")
    three = generate_records(board_type="hex8", num_players=3, agent="random", seed=12,
                             count=12, node="t")
    mixed = [*two, *three]
    random.Random(5).shuffle(mixed)
    return mixed


@pytest.fixture
def log(records: list[GameRecord]) -> Log:
    """Three partitions of 12 games, as a keyed producer would spread them."""
    parts: Log = {0: [], 1: [], 2: []}
    for i, r in enumerate(records):
        parts[i % 3].append(entry(r))
    return parts


def make(store: ChunkStore, sinks: Sinks, clock: Clock, *, max_rows: int = 150,
         start_at: Callable[[int], int | None] | None = None) -> StreamProcessor:
    return StreamProcessor(store, topic=TOPIC, feature_version=FEATURE_VERSION,
                           history_length=HISTORY, max_rows=max_rows, max_age_s=MAX_AGE,
                           dead_letter=sinks.letters.append, announce=sinks.announced.append,
                           start_at=start_at, lock_timeout=0.0, clock=clock)


def feed(proc: StreamProcessor, log: Log, partition: int, start: int, stop: int) -> None:
    for offset in range(start, min(stop, len(log[partition]))):
        e = log[partition][offset]
        proc.process(partition, offset, e.payload, key=e.key)


def drain(proc: StreamProcessor, log: Log, clock: Clock) -> None:
    """Own every partition, read it to the end and let the age seal the tails."""
    for p in log:
        feed(proc, log, p, proc.assign(p), len(log[p]))
    clock.now += MAX_AGE
    proc.tick()


def sealed_rows(store: ChunkStore) -> Counter[tuple[str, int]]:
    keys: Counter[tuple[str, int]] = Counter()
    for key in store.config_keys():
        for _, path in store.sealed(key):
            rows = load_npz_dataset(path).rows
            keys.update(zip(rows.game_id.tolist(), rows.move_number.tolist()))
    return keys


def expected_rows(log: Log) -> Counter[tuple[str, int]]:
    return Counter((e.record.game_id, m) for entries in log.values() for e in entries
                   if e.record is not None for m in range(len(e.record.moves)))


def assert_exactly_once(store: ChunkStore, log: Log) -> None:
    """Per configuration and partition the sealed ranges are disjoint; together they cover
    every offset that held a valid game; and the rows are exactly the games' rows."""
    covered: dict[int, set[int]] = {p: set() for p in log}
    for key in store.config_keys():
        last_by_stream: dict[str, int] = {}
        for name, _ in store.sealed(key):
            assert name.first > last_by_stream.get(name.stream, -1), (key, name)
            last_by_stream[name.stream] = name.last
            partition = int(name.stream.rpartition("+")[2])
            covered[partition].update(range(name.first, name.last + 1))
    for p, entries in log.items():
        valid = {o for o, e in enumerate(entries) if e.record is not None}
        assert valid <= covered[p], (p, sorted(valid - covered[p]))
        assert covered[p] <= set(range(len(entries)))
    assert sealed_rows(store) == expected_rows(log)
    assert not [p for p in store.root.rglob("*.tmp")]


# ------------------------------------------------------------------------------ happy path
def test_one_owner_seals_every_offset_once_and_announces(tmp_path: Path, log: Log) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock)
    drain(proc, log, clock)
    assert_exactly_once(store, log)
    on_disk = sorted(p for key in store.config_keys() for _, p in store.sealed(key))
    assert sorted(c.path for c in sinks.announced) == on_disk
    assert proc.counters.processed == 36 and proc.counters.invalid == 0
    assert proc.counters.chunks == len(on_disk)
    assert proc.counters.rows == sum(expected_rows(log).values())
    assert sinks.letters == []
    # both configurations of a range are sealed as one group
    meta = read_metadata(on_disk[0])["extra"]
    assert meta["group"] == ["connect-1_hex8_2p_v1_h0", "connect-1_hex8_3p_v1_h0"]
    assert meta["source"]["kind"] == "kafka" and meta["source"]["topic"] == TOPIC


def test_duplicate_delivery_is_dropped_and_counted(tmp_path: Path, log: Log) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock)
    assert proc.assign(0) == 0
    feed(proc, log, 0, 0, 8)
    feed(proc, log, 0, 0, 8)  # faust's start-up redelivery
    feed(proc, log, 0, 4, 12)
    assert proc.counters.redelivered == 12
    assert proc.expected(0) == 12
    for p in (1, 2):
        feed(proc, log, p, proc.assign(p), 12)
    clock.now += MAX_AGE
    proc.tick()
    assert_exactly_once(store, log)


def test_revoke_mid_chunk_then_reassign_resumes_after_the_last_seal(tmp_path: Path,
                                                                    log: Log) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock)
    proc.assign(1)
    feed(proc, log, 1, 0, 10)
    sealed_last = max(c.name.last for c in sinks.announced)
    assert sealed_last < 9  # records after the seal are open
    proc.revoke(1)
    assert proc.assigned == [] and proc.expected(1) is None
    feed(proc, log, 1, 10, 12)  # in flight across the rebalance: not ours any more
    assert proc.counters.unowned == 2
    other = make(store, Sinks(), clock)  # the lock was released: another owner can take it
    assert other.assign(1) == sealed_last + 1
    other.revoke(1)
    assert proc.assign(1) == sealed_last + 1
    drain(proc, log, clock)
    assert_exactly_once(store, log)


def test_assign_is_idempotent_and_keeps_the_open_chunk(tmp_path: Path, log: Log) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock, max_rows=10_000)
    proc.assign(2)
    feed(proc, log, 2, 0, 7)
    assert proc.assign(2) == 7
    assert sinks.announced == []


def test_a_second_owner_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    store, clock = ChunkStore(tmp_path), Clock()
    first = make(store, Sinks(), clock)
    first.assign(0)
    with pytest.raises(ChunkError, match="another writer holds this stream's lock"):
        make(store, Sinks(), clock).assign(0)


def test_crash_without_close_resumes_exactly_after_the_last_sealed_chunk(
        tmp_path: Path, log: Log) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock)
    for p in log:
        feed(proc, log, p, proc.assign(p), 10)
    resume = {p: max(c.name.last for c in sinks.announced
                     if c.name.stream == topic_stream_id(TOPIC, p)) + 1 for p in log}
    assert all(r < 10 for r in resume.values())
    del proc  # a crash: nothing closed, the locks go with the object as with the process
    gc.collect()
    proc = make(store, Sinks(), clock)
    assert {p: proc.assign(p) for p in log} == resume
    drain(proc, log, clock)
    assert_exactly_once(store, log)


def test_age_seals_a_quiet_partition_on_tick(tmp_path: Path, log: Log) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock, max_rows=10_000)
    proc.assign(0)
    feed(proc, log, 0, 0, 3)
    clock.now += MAX_AGE - 0.5
    proc.tick()
    assert sinks.announced == []
    clock.now += 0.5
    proc.tick()
    assert {(c.name.first, c.name.last) for c in sinks.announced} == {(0, 2)}


def test_replay_start_is_used_only_when_it_is_later(tmp_path: Path, log: Log) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock, start_at=lambda p: 5)
    assert proc.assign(0) == 5
    feed(proc, log, 0, 0, 12)
    assert proc.counters.redelivered == 5
    clock.now += MAX_AGE
    proc.tick()
    assert min(c.name.first for c in sinks.announced) == 5
    proc.close()
    later = make(store, Sinks(), clock, start_at=lambda p: 3)
    assert later.assign(0) == 12  # the store is ahead of the replay start: never re-read


# ------------------------------------------------------------------------------ poison
def poison_log(records: list[GameRecord]) -> tuple[Log, dict[int, tuple[str, str | None]]]:
    """Partition 0: valid games with poison between them; the expected (field, game_id) of
    each poison offset."""
    good = [entry(r) for r in records[:12]]
    victim = records[20].model_dump(mode="json")
    unknown = {**victim, "game": "chess"}
    illegal = {**victim, "moves": [victim["moves"][0]] * 2 + victim["moves"][2:]}
    poison = [
        Entry(b"\xc1 not msgpack", b"k-garbage", None),
        Entry(msgpack.packb(unknown), b"k-unknown", None),
        Entry(b"\x00" * (MAX_RECORD_BYTES + 10), None, None),
        Entry(msgpack.packb(illegal), victim["game_id"].encode(), None),
        Entry(msgpack.packb([1, 2, 3]), None, None),
        Entry(None, b"k-tombstone", None),
    ]
    entries = good[:3] + poison[:2] + good[3:6] + poison[2:] + good[6:]
    expect = {3: ("record", None), 4: ("game", victim["game_id"]), 8: ("record", None),
              9: ("moves[1]", victim["game_id"]), 10: ("record", None), 11: ("record", None)}
    return {0: entries}, expect


def test_invalid_records_are_dead_lettered_and_the_partition_keeps_flowing(
        tmp_path: Path, records: list[GameRecord]) -> None:
    log, expect = poison_log(records)
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock)
    drain(proc, log, clock)
    assert_exactly_once(store, log)
    assert {(d.offset, d.field, d.game_id) for d in sinks.letters} == {
        (o, f, g) for o, (f, g) in expect.items()}
    by_offset = {d.offset: d for d in sinks.letters}
    assert len(by_offset) == len(sinks.letters) == 6
    for offset, letter in by_offset.items():
        assert (letter.topic, letter.partition) == (TOPIC, 0)
        assert letter.payload == (log[0][offset].payload or b"")
        assert letter.key == log[0][offset].key
    assert by_offset[3].reason.startswith("not a msgpack record")
    assert by_offset[4].reason.startswith("unknown game 'chess'; registered: connect")
    assert by_offset[8].reason == (f"record is {MAX_RECORD_BYTES + 10} bytes, limit "
                                   f"{MAX_RECORD_BYTES}")
    assert by_offset[9].reason.startswith("cell ") and "is occupied by seat" in \
        by_offset[9].reason
    assert by_offset[10].reason == "a record must be a map, got list"
    assert by_offset[11].reason == "the message has no value (a tombstone)"
    assert proc.counters.invalid == 6 and proc.counters.processed == len(log[0])
    # the chunk lists the skipped offsets with their reasons
    skipped = {s["position"] for key in store.config_keys() for _, path in store.sealed(key)
               for s in read_metadata(path)["extra"]["skipped"]}
    assert skipped == set(expect)


def test_a_dead_letter_is_sent_before_the_chunk_covering_it_seals(
        tmp_path: Path, records: list[GameRecord]) -> None:
    """The seal that ages out on the invalid record itself must come after the dead
    letter, or a crash between the two would lose it."""
    log, _ = poison_log(records)
    store, clock = ChunkStore(tmp_path), Clock()
    events: list[str] = []
    proc = StreamProcessor(store, topic=TOPIC, feature_version=FEATURE_VERSION,
                           history_length=HISTORY, max_rows=10_000, max_age_s=MAX_AGE,
                           dead_letter=lambda d: events.append(f"dead {d.offset}"),
                           announce=lambda c: events.append(f"seal {c.name.last}"),
                           lock_timeout=0.0, clock=clock)
    proc.assign(0)
    feed(proc, log, 0, 0, 3)
    clock.now += MAX_AGE  # the next add (offset 3, garbage) seals on age
    feed(proc, log, 0, 3, 4)
    assert events[0] == "dead 3" and events[1:] and set(events[1:]) == {"seal 3"}


# ------------------------------------------------------------------------------ crashes
class Crash(BaseException):
    """A SIGKILL stand-in: nothing catches it, nothing after it runs."""


def test_incomplete_seal_group_is_completed_on_resume(tmp_path: Path, log: Log,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock)
    proc.assign(0)
    real_link = os.link
    links: list[str] = []

    def link_once_then_die(src: str, dst: str) -> None:
        if links:
            raise Crash()
        links.append(dst)
        real_link(src, dst)

    monkeypatch.setattr(writer_module.os, "link", link_once_then_die)
    with pytest.raises(Crash):
        feed(proc, log, 0, 0, 12)
    monkeypatch.setattr(writer_module.os, "link", real_link)
    del proc
    gc.collect()
    half = Path(links[0])
    first, last = int(half.stem.split("+")[2]), int(half.stem.split("+")[3])
    assert [n.filename for key in store.config_keys() for n, _ in store.sealed(key)] == \
        [half.name]
    sinks = Sinks()
    proc = make(store, sinks, clock)
    assert proc.assign(0) == first == 0  # rewinds to the group's start
    feed(proc, log, 0, 0, last + 1)
    # the re-seal writes only the missing configuration, with the same range
    assert [(c.config_key, c.name.first, c.name.last) for c in sinks.announced] == [
        ("connect-1_hex8_3p_v1_h0", first, last)]
    drain(proc, log, clock)
    assert_exactly_once(store, log)


@pytest.mark.parametrize("seed", range(5))
def test_random_schedules_keep_every_offset_in_exactly_one_chunk(
        tmp_path: Path, log: Log, seed: int) -> None:
    """Assign, deliver (with faust-style redelivery), revoke, tick and crash in a seeded
    random order, then drain; the store must hold every game exactly once."""
    rng = random.Random(seed)
    store, clock = ChunkStore(tmp_path), Clock()
    proc = make(store, Sinks(), clock, max_rows=rng.choice([100, 300]))
    position: dict[int, int] = {}
    for _ in range(60):
        step = rng.random()
        p = rng.choice(list(log))
        if p not in proc.assigned:
            position[p] = proc.assign(p)
            if rng.random() < 0.5:  # faust delivers from before the seek at start-up
                back = max(0, position[p] - rng.randint(1, 5))
                feed(proc, log, p, back, position[p])
        elif step < 0.55:
            n = rng.randint(1, 6)
            feed(proc, log, p, position[p], position[p] + n)
            position[p] = min(len(log[p]), position[p] + n)
        elif step < 0.65:
            back = max(0, position[p] - rng.randint(1, 8))
            feed(proc, log, p, back, position[p])
        elif step < 0.8:
            proc.revoke(p)
        elif step < 0.9:
            clock.now += rng.choice([1.0, MAX_AGE])
            proc.tick()
        else:
            del proc
            gc.collect()
            proc = make(store, Sinks(), clock, max_rows=rng.choice([100, 300]))
    drain(proc, log, clock)
    assert_exactly_once(store, log)


# ------------------------------------------------------------------------------ formats
def test_dead_letter_message_round_trips_with_all_headers() -> None:
    letter = DeadLetter(topic=TOPIC, partition=3, offset=1234, key=b"gid", reason="bad move",
                        field="moves[4]", game_id="g-1", payload=b"\x81\xa1a\x01")
    message = encode_dead_letter(letter)
    assert message.key == b"gid" and message.value == letter.payload
    assert dict(message.headers) == {
        "playstream-reason": b"bad move", "playstream-field": b"moves[4]",
        "playstream-source-topic": TOPIC.encode(), "playstream-source-partition": b"3",
        "playstream-source-offset": b"1234", "playstream-game-id": b"g-1"}
    assert decode_dead_letter(message.key, message.value, message.headers) == letter


def test_dead_letter_of_an_oversized_payload_is_truncated_and_says_so() -> None:
    payload = b"x" * (MAX_RECORD_BYTES + 100)
    letter = DeadLetter(topic=TOPIC, partition=0, offset=7, key=None, reason="too big",
                        field="record", game_id=None, payload=payload)
    message = encode_dead_letter(letter)
    assert len(message.value) == MAX_RECORD_BYTES
    back = decode_dead_letter(None, message.value, message.headers)
    assert back.reason == (f"too big (payload truncated to the first {MAX_RECORD_BYTES} of "
                           f"its {MAX_RECORD_BYTES + 100} bytes)")
    assert back.game_id is None and back.offset == 7


def test_decode_dead_letter_names_the_bad_header() -> None:
    message = encode_dead_letter(DeadLetter(TOPIC, 0, 1, None, "r", None, None, b"p"))
    headers = [(k, b"-1" if k == dlq.SOURCE_OFFSET else v) for k, v in message.headers]
    with pytest.raises(RecordError) as err:
        decode_dead_letter(None, message.value, headers)
    assert err.value.field == dlq.SOURCE_OFFSET
    with pytest.raises(RecordError, match="headers playstream-game-id are missing"):
        decode_dead_letter(None, message.value, message.headers[:-1])


def test_announcement_round_trips_and_rejects_bad_fields(tmp_path: Path, log: Log) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock)
    proc.assign(2)
    feed(proc, log, 2, 0, 12)
    chunk = sinks.announced[0]
    key, value = encode_announcement(announcement_for(chunk))
    back = decode_announcement(value)
    assert key == chunk.config_key.encode()
    # the store-relative name, never a local path: other machines resolve it in their store
    assert back.name == f"{chunk.config_key}/{chunk.name.filename}" == chunk.object_name
    assert not Path(back.name).is_absolute() and str(tmp_path) not in value.decode()
    assert (back.topic, back.partition, back.stream) == (TOPIC, 2, f"{TOPIC}+2")
    assert (back.first, back.last, back.rows, back.games, back.sha256) == (
        chunk.name.first, chunk.name.last, chunk.rows, chunk.games, chunk.sha256)
    assert back.sealed_at == read_metadata(chunk.path)["extra"]["sealed_at"]
    with pytest.raises(ChunkError) as err:
        decode_announcement(value.replace(b'"rows":', b'"rows":-', 1))
    assert err.value.context["field"] == "rows"
    with pytest.raises(ChunkError, match="limit"):
        decode_announcement(b" " * 70_000)


# ------------------------------------------------------------------------------ failures
def test_a_store_failure_drops_the_partition_so_nothing_seals_over_the_record(
        tmp_path: Path, log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock)
    proc.assign(0)
    feed(proc, log, 0, 0, 2)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_module.ChunkWriter, "_seal", disk_full)
    with pytest.raises(OSError, match="No space left"):
        feed(proc, log, 0, 2, 12)
    monkeypatch.undo()
    assert proc.assigned == []
    feed(proc, log, 0, 5, 12)  # a driver that carries on is ignored, not sealed
    assert sinks.announced == [] and proc.counters.unowned == 7
    successor = make(store, Sinks(), clock)  # the lock is free again
    drain(successor, log, clock)
    assert_exactly_once(store, log)


def test_a_dead_letter_failure_drops_the_partition(tmp_path: Path,
                                                   records: list[GameRecord]) -> None:
    log, _ = poison_log(records)
    store, clock = ChunkStore(tmp_path), Clock()

    def broker_down(letter: DeadLetter) -> None:
        raise RecordError("dead-letter topic unavailable", field="dlq")

    proc = StreamProcessor(store, topic=TOPIC, feature_version=FEATURE_VERSION,
                           history_length=HISTORY, max_rows=150, max_age_s=MAX_AGE,
                           dead_letter=broker_down, announce=lambda c: None,
                           lock_timeout=0.0, clock=clock)
    proc.assign(0)
    with pytest.raises(RecordError, match="unavailable"):
        feed(proc, log, 0, 0, len(log[0]))
    assert proc.assigned == [] and proc.counters.processed == 3
    sinks = Sinks()
    drain(make(store, sinks, clock), log, clock)
    assert sorted(d.offset for d in sinks.letters) == [3, 4, 8, 9, 10, 11]
    assert_exactly_once(store, log)


def test_offsets_that_were_never_delivered_are_counted_and_logged(
        tmp_path: Path, log: Log, caplog: pytest.LogCaptureFixture) -> None:
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock, max_rows=10_000)
    proc.assign(0)
    feed(proc, log, 0, 0, 2)
    with caplog.at_level("WARNING", logger="playstream.streams"):
        feed(proc, log, 0, 5, 7)  # 2..4 deleted by retention, say
    assert proc.counters.missing_offsets == 3 and proc.expected(0) == 7
    [record] = [r for r in caplog.records if r.getMessage().startswith("offsets skipped")]
    assert (record.partition, record.first, record.last) == (0, 2, 4)  # type: ignore[attr-defined]
    clock.now += MAX_AGE
    proc.tick()
    assert {(c.name.first, c.name.last) for c in sinks.announced} == {(0, 6)}


def test_finalize_seals_every_open_chunk(tmp_path: Path, log: Log) -> None:
    """A bounded run (a replay) ends by sealing what it read, whatever the size and age."""
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = make(store, sinks, clock, max_rows=10_000)
    for p in log:
        feed(proc, log, p, proc.assign(p), len(log[p]))
    assert sinks.announced == []
    proc.finalize()
    assert {(c.name.stream, c.name.first, c.name.last) for c in sinks.announced} == {
        (topic_stream_id(TOPIC, p), 0, len(log[p]) - 1) for p in log}
    assert_exactly_once(store, log)


def test_a_long_non_ascii_reason_survives_the_round_trip() -> None:
    message = encode_dead_letter(DeadLetter(TOPIC, 0, 1, None, "é" * 5000, "record", None,
                                            b"p"))
    back = decode_dead_letter(None, message.value, message.headers)
    assert back.reason == "é" * dlq.MAX_REASON_CHARS


def test_open_batches_are_joined_in_order_up_to_the_write_size(
        records: list[GameRecord]) -> None:
    """The writer gets the open rows as a few joined batches (its checks cost per call):
    every row once, in order, each join within the bound unless one game alone exceeds it."""
    game = get_game("connect")
    two = [r for r in records if r.num_players == 2]
    settings = ExportSettings(game="connect", board_type="hex8", num_players=2,
                              feature_version=FEATURE_VERSION, history_length=HISTORY)
    batches = [encode_game_rows(game, game.replay("hex8", 2, r.moves), None, settings,
                                r.game_id) for r in two]
    sizes = [writer_module.batch_nbytes(b) for b in batches]
    bound = 3 * max(sizes)
    joined = list(writer_module.joined_batches(batches, bound))
    assert 1 < len(joined) < len(batches)
    assert all(writer_module.batch_nbytes(b) <= bound for b in joined)
    assert [(g, m) for b in joined for g, m in zip(b.game_id.tolist(), b.move_number.tolist())
            ] == [(g, m) for b in batches for g, m in zip(b.game_id.tolist(),
                                                          b.move_number.tolist())]
    for name in ("features", "policy_indices", "policy_values", "values_mp"):
        assert (np.concatenate([getattr(b, name) for b in joined])
                == np.concatenate([getattr(b, name) for b in batches])).all()
    assert [len(b) for b in writer_module.joined_batches(batches, 1)] == [len(b) for b in batches]
    assert list(writer_module.joined_batches([], bound)) == []


def test_a_chunk_and_its_folder_are_fsynced_before_it_is_announced(
        tmp_path: Path, log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scratch file skips its fsyncs (it is only copied); the sealed copy and the folder
    that names it are synced before the seal returns, i.e. before anything commits it."""
    synced: set[tuple[int, int]] = set()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        real_fsync(fd)

    def inode(path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_dev, st.st_ino

    unsynced: list[Path] = []

    def announce(chunk: SealedChunk) -> None:
        assert chunk.path is not None
        unsynced.extend(p for p in (chunk.path, chunk.path.parent) if inode(p) not in synced)
        sinks.announced.append(chunk)

    monkeypatch.setattr(os, "fsync", fsync)
    store, sinks, clock = ChunkStore(tmp_path), Sinks(), Clock()
    proc = StreamProcessor(store, topic=TOPIC, feature_version=FEATURE_VERSION,
                           history_length=HISTORY, max_rows=150, max_age_s=MAX_AGE,
                           dead_letter=sinks.letters.append, announce=announce,
                           lock_timeout=0.0, clock=clock)
    drain(proc, log, clock)
    assert sinks.announced and unsynced == []
    assert_exactly_once(store, log)
