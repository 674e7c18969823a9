"""The stream processor against a real Apache Kafka broker, run as users run it: the
`stream` command in a subprocess, stopped by SIGTERM or killed by SIGKILL.

Every test ends with the same check: the sealed ranges of a partition never overlap and hold
every offset of a valid game, and compacting them (without dedup, so a duplicate would show)
gives exactly the rows of the published games.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import msgpack
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError
from kafka.structs import OffsetAndMetadata

from playstream.clients.kafka import KafkaConnection
from playstream.chunks import ChunkStore
from playstream.compaction import CompactOptions, compact
from playstream.dataset import load_npz_dataset
from playstream.localkafka import LocalKafka
from playstream.topics import MAX_MESSAGE_BYTES
from playstream.producers.topics import ensure_topics
from playstream.records import MAX_RECORD_BYTES, GameRecord
from playstream.selfplay import generate_records
from playstream.streams import decode_announcement, decode_dead_letter
from playstream.streams.faust_app import faust_datadir

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4
CONFIG_KEY = "connect-1_square8_2p_v2_h3"
STREAM = [sys.executable, "-m", "playstream.cli", "stream"]


@dataclass
class Topics:
    bootstrap: str
    games: str
    dlq: str
    chunks: str
    group: str


@dataclass
class Published:
    partition: int
    offset: int
    record: GameRecord | None


@pytest.fixture
def topics(kafka_bootstrap: str, kafka_connection: KafkaConnection,
           topic_prefix: str) -> Iterator[Topics]:
    t = Topics(kafka_bootstrap, f"{topic_prefix}.games", f"{topic_prefix}.dlq",
               f"{topic_prefix}.chunks", f"{topic_prefix}-processors")
    ensure_topics(kafka_connection, {t.games: PARTITIONS, t.dlq: 1, t.chunks: 1})
    yield t
    shutil.rmtree(faust_datadir(t.group), ignore_errors=True)  # faust's empty folders


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5,
                      max_request_size=MAX_MESSAGE_BYTES)
    yield p
    p.close()


def games(seed: int, count: int) -> list[GameRecord]:
    return list(generate_records(board_type="square8", num_players=2, agent="random",
                                 seed=seed, count=count, node="kafka-test"))


def publish(producer: KafkaProducer, topic: str, records: list[GameRecord]) -> list[Published]:
    futures = [(r, producer.send(topic, key=r.game_id.encode(), value=r.to_msgpack()))
               for r in records]
    out = []
    for r, f in futures:
        meta = f.get(timeout=30)
        out.append(Published(meta.partition, meta.offset, r))
    return out


class Processor:
    """One `stream` command in a subprocess; its output goes to files in ``folder``."""

    def __init__(self, t: Topics, store: Path, folder: Path, *args: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.out = folder / "stdout.txt"
        self.err = folder / "stderr.txt"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [*STREAM, "--bootstrap", t.bootstrap, "--topic", t.games, "--group", t.group,
                 "--dlq-topic", t.dlq, "--chunks-topic", t.chunks, "--chunks", str(store),
                 *args], stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 20) -> tuple[int, float, str]:
        """SIGTERM; (exit code, seconds to exit, stdout)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started, self.out.read_text()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def logs(self) -> str:
        return f"--- stdout\n{self.out.read_text()}\n--- stderr\n{self.err.read_text()[-4000:]}"


@pytest.fixture
def processors() -> Iterator[list[Processor]]:
    """Every processor a test starts; any still running at the end is killed."""
    started: list[Processor] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.kill()


def covered(store: ChunkStore) -> dict[int, list[tuple[int, int]]]:
    """Sealed ranges per partition of the one configuration, in order."""
    out: dict[int, list[tuple[int, int]]] = {}
    for name, _ in store.sealed(CONFIG_KEY) if CONFIG_KEY in store.config_keys() else []:
        out.setdefault(int(name.stream.rpartition("+")[2]), []).append((name.first, name.last))
    return out


def seals_settled(store: ChunkStore) -> Callable[[], bool]:
    """Every partition has a sealed chunk and no new seal came for 1.5 s (the processor is
    between seals, its unsealed tail open)."""
    def settled() -> bool:
        before = covered(store)
        if len(before) < PARTITIONS:
            return False
        time.sleep(1.5)
        return covered(store) == before
    return settled


def wait_for(what: str, done: Callable[[], bool], timeout: float,
             running: list[Processor]) -> float:
    started = time.monotonic()
    while not done():
        for p in running:
            assert p.proc.poll() is None, f"processor exited early\n{p.logs()}"
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s\n"
                                 + "\n".join(p.logs() for p in running))
        time.sleep(0.2)
    return time.monotonic() - started


def all_sealed(store: ChunkStore, ends: dict[int, int]) -> Callable[[], bool]:
    """True once every partition's sealed ranges reach its end offset."""
    def check() -> bool:
        ranges = covered(store)
        return all(end == 0 or (p in ranges and ranges[p][-1][1] == end - 1)
                   for p, end in ends.items())
    return check


def end_offsets(t: Topics) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=t.bootstrap)
    try:
        tps = [TopicPartition(t.games, p) for p in range(PARTITIONS)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def compacted_rows(store: ChunkStore, tmp: Path) -> Counter[tuple[str, int]]:
    """(game_id, move_number) of every row the finalizer compacts, without dedup (so that a
    duplicate would show)."""
    result = compact(store, CONFIG_KEY, tmp / f"out-{uuid.uuid4().hex}.npz",
                     CompactOptions(dedup=False))
    rows = load_npz_dataset(result.outputs[0]).rows
    return Counter(zip(rows.game_id.tolist(), rows.move_number.tolist()))


def assert_exactly_once(store: ChunkStore, published: list[Published], tmp: Path) -> None:
    """Sealed ranges never overlap and hold every offset of a valid game, and the compacted
    rows are exactly the rows of the valid published games."""
    ranges = covered(store)
    for p in range(PARTITIONS):
        offsets = [o for first, last in ranges.get(p, []) for o in range(first, last + 1)]
        assert offsets == sorted(set(offsets)), (p, ranges.get(p))
        valid = {m.offset for m in published if m.partition == p and m.record is not None}
        assert valid <= set(offsets), (p, sorted(valid - set(offsets)))
    got = compacted_rows(store, tmp)
    want_rows = Counter((m.record.game_id, t) for m in published if m.record is not None
                        for t in range(len(m.record.moves)))
    assert got == want_rows
    assert not list(store.root.rglob("*.tmp"))


def read_topic(bootstrap: str, topic: str, count: int,
               timeout: float = 20) -> list[ConsumerRecord]:
    """The first ``count`` messages of a (one-partition) topic."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1000)
    out: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            out.extend(consumer)
    finally:
        consumer.close()
    return out


def summary(stdout: str) -> dict[str, int]:
    """The counters of the command's closing line; no run may see an offset gap."""
    line = next(ln for ln in stdout.splitlines() if ln.startswith("stream: "))
    counts = {k: int(float(v)) for k, v in (kv.split("=") for kv in line.split()[1:])}
    assert counts["missing_offsets"] == 0, line
    return counts


# ---------------------------------------------------------------------------------------
def commit_group_offsets(t: Topics, offsets: dict[int, int]) -> None:
    """Commit for the (empty) group; a fresh broker needs a moment before it has a group
    coordinator."""
    admin = KafkaAdminClient(bootstrap_servers=t.bootstrap)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                admin.alter_group_offsets(t.group, {
                    TopicPartition(t.games, p): OffsetAndMetadata(o) for p, o in offsets.items()})
                break
            except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError):
                assert time.monotonic() < deadline, "no group coordinator within 30 s"
                time.sleep(0.5)
        committed = admin.list_group_offsets(t.group)[t.group]
        assert {tp.partition: o.offset for tp, o in committed.items()} == offsets
    finally:
        admin.close()


def test_one_processor_seals_every_offset_once_and_announces(
        topics: Topics, producer: KafkaProducer, processors: list[Processor],
        tmp_path: Path) -> None:
    published = publish(producer, topics.games, games(seed=1, count=120))
    # The group claims everything was consumed (faust #606 commits past unprocessed
    # records): the chunk names, which say nothing was, must win.
    commit_group_offsets(topics, end_offsets(topics))
    store = ChunkStore(tmp_path / "store")
    processors.append(Processor(topics, store.root, tmp_path / "p1", "--chunk-rows", "600",
                                "--chunk-age", "1s"))
    took = wait_for("all offsets sealed", all_sealed(store, end_offsets(topics)), 45,
                    processors)
    code, stop_s, out = processors[0].stop()
    assert code == 0, processors[0].logs()
    assert summary(out)["processed"] == 120 and summary(out)["invalid"] == 0
    assert_exactly_once(store, published, tmp_path)
    sealed = {f"{CONFIG_KEY}/{n.filename}" for n, _ in store.sealed(CONFIG_KEY)}
    messages = read_topic(topics.bootstrap, topics.chunks, len(sealed))
    announced = [decode_announcement(m.value) for m in messages]
    assert sorted(a.name for a in announced) == sorted(sealed)  # store-relative names
    assert {m.key for m in messages} == {CONFIG_KEY.encode()}
    assert sum(a.rows for a in announced) == summary(out)["rows"]
    print(f"sealed all offsets {took:.1f} s after start; SIGTERM exit in {stop_s:.1f} s")


def test_sigkill_mid_chunk_then_restart_loses_and_duplicates_nothing(
        topics: Topics, producer: KafkaProducer, processors: list[Processor],
        tmp_path: Path) -> None:
    published = publish(producer, topics.games, games(seed=2, count=120))
    ends = end_offsets(topics)
    store = ChunkStore(tmp_path / "store")
    # chunks seal at 400 rows; the tails wait for an age they never reach
    first = Processor(topics, store.root, tmp_path / "p1", "--chunk-rows", "400",
                      "--chunk-age", "10m")
    processors.append(first)

    wait_for("first seals on every partition", seals_settled(store), 40, processors)
    first.kill()
    before = covered(store)
    open_tail = {p: ends[p] - 1 - r[-1][1] for p, r in before.items()}
    assert any(n > 0 for n in open_tail.values()), before  # records were left unsealed
    started = time.monotonic()
    second = Processor(topics, store.root, tmp_path / "p2", "--chunk-rows", "400",
                       "--chunk-age", "1s")
    processors.append(second)
    wait_for("all offsets sealed after the restart", all_sealed(store, ends), 45, [second])
    took = time.monotonic() - started
    code, _, out = second.stop()
    assert code == 0, second.logs()
    after = covered(store)
    for p, ranges in before.items():
        assert after[p][:len(ranges)] == ranges  # what was sealed stays as it was
        if open_tail[p]:
            assert after[p][len(ranges)][0] == ranges[-1][1] + 1  # and resumes right after
    assert summary(out)["processed"] == sum(open_tail.values())
    assert_exactly_once(store, published, tmp_path)
    print(f"open tails at SIGKILL {open_tail}; restart sealed them in {took:.1f} s")


def test_second_processor_joins_and_leaves(topics: Topics, producer: KafkaProducer,
                                           processors: list[Processor],
                                           tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "store")
    args = ("--chunk-rows", "300", "--chunk-age", "1s")
    published = publish(producer, topics.games, games(seed=3, count=60))
    first = Processor(topics, store.root, tmp_path / "p1", *args)
    processors.append(first)
    wait_for("first batch sealed", all_sealed(store, end_offsets(topics)), 40, processors)
    second = Processor(topics, store.root, tmp_path / "p2", *args)
    processors.append(second)

    def second_owns_a_partition() -> bool:
        return any(p.read_text().strip() == str(second.pid)
                   for p in (store.root / "locks").glob("*.lock"))

    joined = wait_for("the second processor takes partitions", second_owns_a_partition, 40,
                      processors)
    published += publish(producer, topics.games, games(seed=4, count=60))
    wait_for("second batch sealed", all_sealed(store, end_offsets(topics)), 40, processors)
    published += publish(producer, topics.games, games(seed=5, count=40))
    code, stop_s, out = second.stop()
    assert code == 0, second.logs()
    assert summary(out)["processed"] > 0
    wait_for("third batch sealed by the first alone", all_sealed(store, end_offsets(topics)),
             40, [first])
    code, _, out = first.stop()
    assert code == 0, first.logs()
    assert summary(out)["processed"] > 0
    assert_exactly_once(store, published, tmp_path)
    print(f"second processor owned partitions {joined:.1f} s after start; its SIGTERM exit "
          f"took {stop_s:.1f} s")


def test_poison_messages_go_to_the_dead_letter_topic(topics: Topics, producer: KafkaProducer,
                                                      processors: list[Processor],
                                                      tmp_path: Path) -> None:
    records = games(seed=6, count=30)
    victim = records[-1].model_dump(mode="json")
    illegal = {**victim, "moves": [victim["moves"][0]] * 2 + victim["moves"][2:]}
    oversized = b"\x00" * (MAX_RECORD_BYTES + 1000)  # within the topic's message bound
    poison = [(b"garbage", b"\xc1\xc1 not msgpack", "record", "not a msgpack record"),
              (b"unknown", msgpack.packb({**victim, "game": "chess"}), "game",
               "unknown game 'chess'; registered: connect"),
              (b"huge", oversized, "record",
               f"record is {len(oversized)} bytes, limit {MAX_RECORD_BYTES} (payload "
               f"truncated to the first {MAX_RECORD_BYTES} of its {len(oversized)} bytes)"),
              (victim["game_id"].encode(), msgpack.packb(illegal), "moves[1]", "cell "),
              (b"tombstone", None, "record", "the message has no value (a tombstone)")]
    published = publish(producer, topics.games, records[:10])
    bad: dict[int, tuple[bytes, bytes | None, str, str]] = {}
    for key, value, field, reason in poison:
        meta = producer.send(topics.games, key=key, value=value, partition=1).get(timeout=30)
        bad[meta.offset] = (key, value, field, reason)
        published.append(Published(1, meta.offset, None))
    published += publish(producer, topics.games, records[10:29])
    store = ChunkStore(tmp_path / "store")
    processors.append(Processor(topics, store.root, tmp_path / "p1", "--chunk-age", "1s"))
    wait_for("all offsets sealed", all_sealed(store, end_offsets(topics)), 45, processors)
    code, _, out = processors[0].stop()
    assert code == 0, processors[0].logs()
    assert summary(out)["invalid"] == len(poison)
    letters = [(m, decode_dead_letter(m.key, m.value, m.headers))
               for m in read_topic(topics.bootstrap, topics.dlq, len(poison))]
    assert sorted(d.offset for _, d in letters) == sorted(bad)
    for message, d in letters:
        key, value, field, reason = bad[d.offset]
        assert (d.topic, d.partition, d.key, d.field) == (topics.games, 1, key, field)
        assert d.reason.startswith(reason), d.reason
        assert d.payload == (value or b"")[:MAX_RECORD_BYTES]
        assert dict(message.headers)["playstream-source-offset"] == str(d.offset).encode()
    assert {d.game_id for _, d in letters if d.field in ("game", "moves[1]")} == {
        victim["game_id"]}
    assert_exactly_once(store, published, tmp_path)


def test_replay_from_a_time_skips_older_records(topics: Topics, producer: KafkaProducer,
                                                processors: list[Processor],
                                                tmp_path: Path) -> None:
    old = publish(producer, topics.games, games(seed=7, count=20))
    time.sleep(0.1)
    since = datetime.now(timezone.utc)
    time.sleep(0.1)
    new = publish(producer, topics.games, games(seed=8, count=30))
    store = ChunkStore(tmp_path / "store")
    processors.append(Processor(topics, store.root, tmp_path / "p1", "--chunk-age", "1s",
                                "--from", since.isoformat()))
    wait_for("the replayed records sealed", all_sealed(store, end_offsets(topics)), 45,
             processors)
    code, _, out = processors[0].stop()
    assert code == 0, processors[0].logs()
    assert summary(out)["processed"] == 30
    first_new = {p: min((m.offset for m in new if m.partition == p), default=None)
                 for p in range(PARTITIONS)}
    for p, ranges in covered(store).items():
        assert ranges[0][0] == first_new[p]
    assert_exactly_once(store, new, tmp_path)
    assert not {m.record.game_id for m in old} & {
        g for g, _ in compacted_rows(store, tmp_path)}


def test_a_store_failure_stops_the_worker_and_a_restart_loses_nothing(
        topics: Topics, producer: KafkaProducer, processors: list[Processor],
        tmp_path: Path) -> None:
    """A seal that fails must stop the worker (faust's default supervisor would restart the
    agent past the record, and a later seal would cover its offset without it)."""
    published = publish(producer, topics.games, games(seed=9, count=40))
    store = ChunkStore(tmp_path / "store")
    blocker = store.root / CONFIG_KEY  # a file where the configuration's folder must go
    blocker.write_text("not a folder")
    failing = Processor(topics, store.root, tmp_path / "p1", "--chunk-age", "1s")
    processors.append(failing)
    code = failing.proc.wait(45)
    assert code == 1, failing.logs()
    assert "the stream worker stopped with exit code 1" in failing.err.read_text()
    assert "cannot seal the chunk" in failing.err.read_text()
    blocker.unlink()
    assert not list(store.root.rglob("*.npz"))
    started = time.monotonic()
    processors.append(Processor(topics, store.root, tmp_path / "p2", "--chunk-age", "1s"))
    wait_for("all offsets sealed after the restart", all_sealed(store, end_offsets(topics)),
             45, processors[1:])
    took = time.monotonic() - started
    code, _, out = processors[1].stop()
    assert code == 0, processors[1].logs()
    assert summary(out)["processed"] == 40
    assert_exactly_once(store, published, tmp_path)
    print(f"restart after the failure sealed everything in {took:.1f} s")


def test_broker_restart_mid_stream_loses_and_duplicates_nothing(
        processors: list[Processor], tmp_path: Path) -> None:
    """A broker of its own, restarted (SIGTERM, same data) while the processor runs: the
    processor reconnects by itself and every record is sealed exactly once."""
    broker = LocalKafka(tmp_path / "kafka")
    bootstrap = broker.start()
    conn = KafkaConnection(bootstrap_servers=bootstrap)
    t = Topics(bootstrap, "restart.games", "restart.dlq", "restart.chunks", "restart-group")
    try:
        ensure_topics(conn, {t.games: PARTITIONS, t.dlq: 1, t.chunks: 1})
        before = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        published = publish(before, t.games, games(seed=31, count=60))
        before.close()
        store = ChunkStore(tmp_path / "store")
        proc = Processor(t, store.root, tmp_path / "p1", "--chunk-rows", "300",
                         "--chunk-age", "1s")
        processors.append(proc)
        wait_for("sealed before the restart", all_sealed(store, end_offsets(t)), 45, [proc])
        broker.restart()
        after = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=10)
        published += publish(after, t.games, games(seed=32, count=60))
        after.close()
        wait_for("sealed after the restart", all_sealed(store, end_offsets(t)), 90, [proc])
        code, _, out = proc.stop()
        assert code == 0, proc.logs()
        assert summary(out)["invalid"] == 0
        assert_exactly_once(store, published, tmp_path)
    finally:
        broker.stop()
        shutil.rmtree(faust_datadir(t.group), ignore_errors=True)
