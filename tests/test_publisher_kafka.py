"""The producer side against a real Apache Kafka broker: topics, concurrent workers,
validation, a broker restart in the middle of publishing, and the `publish` command."""
from __future__ import annotations

import json

import socket
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, KafkaAdminClient

from playstream.cli.common import Summary, progress
from playstream.cli.publish import publish_cmd, run_selfplay_worker
from playstream.errors import PlaystreamError, RecordError
from playstream.gamefiles import GameDatabase, JsonlWriter
from playstream.localkafka import LocalKafka
from playstream.producers import Spool
from playstream.producers.publisher import GamePublisher
from playstream.topics import MAX_MESSAGE_BYTES
from playstream.producers.topics import ensure_topics
from playstream.records import GameRecord, record_from_msgpack
from playstream.selfplay import generate_records

pytestmark = pytest.mark.kafka


def games(seed: int, count: int, agent: str = "random", worker: str = "0") -> list[GameRecord]:
    return list(generate_records(board_type="square8", num_players=2, agent=agent, seed=seed,
                                 count=count, simulations=4, node="test", worker=worker))


def consume_all(bootstrap: str, topic: str) -> list[tuple[int, int, bytes, bytes]]:
    """Every message on the topic as (partition, offset, key, value), read up to the end
    offsets, so duplicates would show up."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"g{uuid.uuid4().hex}",
                             auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)
        out: list[tuple[int, int, bytes, bytes]] = []
        deadline = time.monotonic() + 20
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, "topic not read to its end within 20 s"
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend((m.partition, m.offset, m.key, m.value) for m in batch)
        return out
    finally:
        consumer.close()


def assert_exactly_once(messages: list[tuple[int, int, bytes, bytes]],
                        records: list[GameRecord]) -> None:
    """Each game exactly once, keyed by its game_id, with the bytes that were published."""
    assert Counter(m[2].decode() for m in messages) == Counter(r.game_id for r in records)
    assert max(Counter(r.game_id for r in records).values()) == 1
    by_id = {r.game_id: r for r in records}
    for _, _, key, value in messages:
        decoded, _ = record_from_msgpack(value)
        assert decoded == by_id[key.decode()]
        assert value == by_id[key.decode()].to_msgpack()


def test_ensure_topics_creates_checks_and_is_idempotent(kafka_bootstrap: str,
                                                        topic_prefix: str) -> None:
    games_topic, dlq = f"{topic_prefix}.games", f"{topic_prefix}.dlq"
    ensure_topics(kafka_bootstrap, {games_topic: 3, dlq: 1})
    ensure_topics(kafka_bootstrap, {games_topic: 3, dlq: 1})  # existing and fitting: fine
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {t["name"]: len(t["partitions"])
                     for t in admin.describe_topics([games_topic, dlq])}
        assert described == {games_topic: 3, dlq: 1}
        configs = admin.describe_configs([ConfigResource("TOPIC", games_topic)])
        values = {k: v["value"] for k, v in configs["topic"][games_topic].items()}
        assert values["retention.ms"] == "-1"
        assert values["max.message.bytes"] == str(MAX_MESSAGE_BYTES)
        with pytest.raises(PlaystreamError, match="topic has 3 partitions, expected 4") as info:
            ensure_topics(kafka_bootstrap, {games_topic: 4})
        assert info.value.context == {"topic": games_topic, "partitions": 3, "expected": 4}
        small = f"{topic_prefix}.small"
        admin.create_topics({small: {"num_partitions": 1, "replication_factor": -1,
                                     "configs": {"max.message.bytes": "1000000"}}})
        admin.wait_for_topics([small])
        with pytest.raises(PlaystreamError, match="max.message.bytes is 1000000"):
            ensure_topics(kafka_bootstrap, {small: 1})
    finally:
        admin.close()


def test_three_concurrent_workers_deliver_every_game_exactly_once(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    topic = f"{topic_prefix}.games"
    ensure_topics(kafka_bootstrap, {topic: 4})
    per_worker = [games(seed=11, count=60, worker="w0"),
                  games(seed=12, count=60, worker="w1"),
                  games(seed=13, count=3, agent="mcts", worker="w2")
                  + games(seed=13, count=57, worker="w2")]
    left: dict[int, int] = {}
    metrics = {}
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            publisher = GamePublisher(kafka_bootstrap, topic, spool_dir=tmp_path / f"w{index}",
                                      client_id=f"test-w{index}")
            seqs = [publisher.publish(r) for r in per_worker[index]]
            assert seqs == list(range(60))
            left[index] = publisher.close(timeout=20)
            metrics[index] = publisher.metrics()
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert left == {0: 0, 1: 0, 2: 0}
    assert [(m.published, m.spooled_pending) for m in metrics.values()] == [(60, 0)] * 3
    records = [r for batch in per_worker for r in batch]
    messages = consume_all(kafka_bootstrap, topic)
    assert_exactly_once(messages, records)
    assert any(r.search is not None for r in records)
    partition_of: dict[bytes, set[int]] = {}
    for partition, _, key, _ in messages:
        partition_of.setdefault(key, set()).add(partition)
    assert len({p for ps in partition_of.values() for p in ps}) > 1  # keys spread out


def test_invalid_records_are_refused_and_nothing_is_sent(kafka_bootstrap: str,
                                                         topic_prefix: str,
                                                         tmp_path: Path) -> None:
    topic = f"{topic_prefix}.games"
    good = games(seed=21, count=1)[0]
    loser = 2 if good.winner == 1 else 1
    bad_rules = good.model_copy(update={"winner": loser})  # model_copy skips validation
    bad_shape = good.model_copy(update={"num_players": 9})
    illegal = good.model_copy(update={"moves": [64] + good.moves[1:]})
    publisher = GamePublisher(kafka_bootstrap, topic, spool_dir=tmp_path / "s", partitions=1)
    try:
        with pytest.raises(RecordError) as info:
            publisher.publish(bad_rules)
        assert (info.value.field, info.value.game_id) == ("winner", good.game_id)
        assert "disagrees with the moves" in info.value.message
        with pytest.raises(RecordError) as info:
            publisher.publish(bad_shape)
        assert info.value.field == "num_players"
        with pytest.raises(RecordError) as info:
            publisher.publish(illegal)
        assert info.value.field == "moves[0]"  # names the move that is off the board
        assert publisher.metrics().spooled_pending == 0
        assert publisher.publish(good) == 0  # the first and only spooled record
        assert publisher.flush(20)
    finally:
        assert publisher.close(timeout=10) == 0
    assert_exactly_once(consume_all(kafka_bootstrap, topic), [good])


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this module's own, since its tests stop and restart it."""
    broker = LocalKafka(tmp_path_factory.mktemp("own-kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_restart_during_publishing_loses_no_game(private_broker: LocalKafka,
                                                        topic_prefix: str,
                                                        tmp_path: Path) -> None:
    """Expected: exactly once. The outage is far shorter than delivery_timeout_ms, so the
    idempotent producer's own retries carry every record and nothing is resent by us."""
    bootstrap = private_broker.bootstrap
    assert bootstrap is not None
    topic = f"{topic_prefix}.games"
    before, during, after = games(31, 20), games(32, 20), games(33, 10)
    publisher = GamePublisher(bootstrap, topic, spool_dir=tmp_path / "spool", partitions=2,
                              max_block_ms=2000)
    try:
        for r in before:
            publisher.publish(r)
        assert publisher.flush(20)
        private_broker.stop()
        for r in during:
            started = time.monotonic()
            publisher.publish(r)
            assert time.monotonic() - started < 2.0  # never stuck on the absent broker
        assert publisher.metrics().spooled_pending == 20
        private_broker.restart()
        for r in after:
            publisher.publish(r)
    finally:
        left = publisher.close(timeout=30)
    assert left == 0
    assert publisher.metrics().published == 50
    assert_exactly_once(consume_all(bootstrap, topic), before + during + after)


def test_close_leaves_the_rest_in_the_spool_and_the_next_start_sends_it_first(
        private_broker: LocalKafka, topic_prefix: str, tmp_path: Path) -> None:
    bootstrap = private_broker.bootstrap
    assert bootstrap is not None
    topic = f"{topic_prefix}.games"
    ensure_topics(bootstrap, {topic: 2})
    stranded, later = games(41, 10), games(42, 5)
    private_broker.stop()
    try:
        publisher = GamePublisher(bootstrap, topic, spool_dir=tmp_path / "spool", partitions=2,
                                  connect_timeout_ms=1000)
        for r in stranded:
            publisher.publish(r)
        assert publisher.close(timeout=1) == 10
        metrics = publisher.metrics()
        assert (metrics.published, metrics.spooled_pending) == (0, 10)
        assert metrics.failures >= 1 and "cannot reach Kafka" in (metrics.last_error or "")
    finally:
        private_broker.restart()
    successor = GamePublisher(bootstrap, topic, spool_dir=tmp_path / "spool", partitions=2)
    for r in later:
        successor.publish(r)
    assert successor.close(timeout=30) == 0
    assert successor.metrics().published == 15
    messages = consume_all(bootstrap, topic)
    assert_exactly_once(messages, stranded + later)
    order = {r.game_id: i for i, r in enumerate(stranded + later)}
    for partition in {m[0] for m in messages}:
        in_log = [order[key.decode()] for p, _, key, _ in sorted(messages) if p == partition]
        assert in_log == sorted(in_log)  # spool order kept: the stranded games went first


@pytest.mark.parametrize("kind", ["jsonl", "db"])
def test_publish_command_backfills_valid_games_and_reports_invalid_ones(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, kind: str) -> None:
    topic = f"{topic_prefix}.games"
    valid = games(51, 8)
    wrong_winner = games(52, 1)[0]
    wrong_winner = wrong_winner.model_copy(update={"winner": 2 if wrong_winner.winner == 1 else 1})
    path = tmp_path / f"games.{kind}"
    if kind == "jsonl":
        with JsonlWriter(path) as out:
            for r in valid[:4]:
                out.write(r)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("{not json\n")
            fh.write(wrong_winner.to_json_line() + "\n")
        with JsonlWriter(path) as out:
            for r in valid[4:]:
                out.write(r)
    else:
        with GameDatabase(path) as db:
            for r in valid[:4] + [wrong_winner] + valid[4:]:
                db.write(r)
    rejects_file = tmp_path / "rejects.jsonl"
    result = CliRunner().invoke(publish_cmd, [f"--{kind}", str(path), "--bootstrap",
                                              kafka_bootstrap, "--topic", topic,
                                              "--partitions", "2",
                                              "--rejects", str(rejects_file)])
    assert result.exit_code == 0, result.output
    skipped = 2 if kind == "jsonl" else 1
    assert f"publish: published=8 acknowledged=8 skipped={skipped}" in result.stdout
    assert "skipped 1: invalid winner" in result.stdout
    where = "line=6" if kind == "jsonl" else "seq=5"
    assert f"rejected: file={path} {where} game_id={wrong_winner.game_id} field=winner: " \
           "recorded winner" in result.stderr
    rejects = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    assert [r["field"] for r in rejects] == (["record", "winner"] if kind == "jsonl"
                                             else ["winner"])
    if kind == "jsonl":
        assert "skipped 1: invalid record" in result.stdout
        assert rejects[0]["line"] == 5 and "not a JSON record" in rejects[0]["reason"]
    assert_exactly_once(consume_all(kafka_bootstrap, topic), valid)
    with Spool(tmp_path / f"games.{kind}.spool", max_bytes=1 << 20) as spool:
        assert spool.pending_count == 0


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_publish_command_exits_1_with_the_count_left_in_the_spool(tmp_path: Path,
                                                                  topic_prefix: str) -> None:
    path = tmp_path / "games.jsonl"
    with JsonlWriter(path) as out:
        for r in games(61, 3):
            out.write(r)
    spool = tmp_path / "spool"
    result = CliRunner().invoke(publish_cmd, [
        "--jsonl", str(path), "--bootstrap", f"127.0.0.1:{_unused_port()}", "--topic",
        f"{topic_prefix}.games", "--spool", str(spool), "--timeout", "0.5"])
    assert result.exit_code == 1
    assert "publish: published=3 acknowledged=0 left_in_spool=3 skipped=0" in result.output
    assert "the broker did not acknowledge 3 games within 0.5s" in result.output
    with Spool(spool, max_bytes=1 << 20) as kept:
        assert [seq for seq, _ in kept.pending()] == [0, 1, 2]


def test_selfplay_worker_publishes_the_games_it_plays(kafka_bootstrap: str,
                                                      topic_prefix: str,
                                                      tmp_path: Path) -> None:
    topic = f"{topic_prefix}.games"
    expected = games(71, 12)
    summary = Summary("selfplay")
    with progress(12, "selfplay", "game", enabled=False) as bar:
        run_selfplay_worker(kafka_bootstrap, topic, tmp_path / "spool", iter(expected),
                            summary, bar, partitions=1)
    assert summary.counts == {"games": 12, "moves": sum(len(r.moves) for r in expected),
                              "acknowledged": 12}
    messages = consume_all(kafka_bootstrap, topic)
    assert [m[2].decode() for m in sorted(messages)] == [r.game_id for r in expected]
    assert_exactly_once(messages, expected)
