"""The continuous finalizer against a real broker: announced chunks of real encoded games
become published dataset versions, forged announcements are refused, a crash between publish
and commit republishes the same rows, and the store catches up after downtime."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from playstream.clients.kafka import KafkaConnection
from playstream.chunks import ChunkName, ChunkStore, ChunkWriter, SealedChunk, topic_stream_id
from playstream.cli.finalize import finalize_cmd
from playstream.compaction import CompactOptions, read_manifest
from playstream.consumers.service import FinalizerService
from playstream.dataset import load_npz_dataset
from playstream.dataset.config import encoder_scope
from playstream.incremental import IncrementalExporter
from playstream.producers.topics import ensure_topics
from playstream.records import GameRecord, decode_json_line
from playstream.selfplay import generate_records
from playstream.streams.announce import (Announcement, announcement_for,
                                         encode_announcement)

pytestmark = pytest.mark.kafka

FEATURE_VERSION = "v2"
HISTORY = 1
SCOPE = encoder_scope(FEATURE_VERSION, HISTORY)


@pytest.fixture(scope="module")
def records() -> list[GameRecord]:
    return list(generate_records(board_type="square8", num_players=2, agent="random", seed=11,
                                 count=9, node="t"))


@pytest.fixture
def topic(kafka_connection: KafkaConnection, topic_prefix: str) -> str:
    name = f"{topic_prefix}.chunks"
    ensure_topics(kafka_connection, {name: 2})
    return name


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    yield p
    p.close()


@pytest.fixture
def consumer_logs(caplog: pytest.LogCaptureFixture,
                  monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """The service's records (the CLI may have stopped the ``playstream`` tree from
    propagating to caplog's root handler in an earlier test)."""
    monkeypatch.setattr(logging.getLogger("playstream"), "propagate", True)
    caplog.set_level(logging.INFO, logger="playstream.consumers")
    return caplog


def seal(store: ChunkStore, games: list[GameRecord], stream: str) -> list[SealedChunk]:
    """Encode ``games`` at the stream's next positions into chunks of at most 40 rows."""
    writer = ChunkWriter(store, stream, SCOPE, max_rows=40)
    exporter = IncrementalExporter(writer, feature_version=FEATURE_VERSION,
                                   history_length=HISTORY)
    try:
        start = writer.next_position
        sealed: list[SealedChunk] = []
        for i, record in enumerate(games):
            result = exporter.add_game(start + i, decode_json_line(record.to_json_line()))
            assert result.skipped is None, result.skipped
            sealed += result.sealed
        return sealed + exporter.finalize()
    finally:
        writer.close()


def announce(producer: KafkaProducer, topic: str, *announcements: Announcement) -> None:
    for a in announcements:
        key, value = encode_announcement(a)
        producer.send(topic, key=key, value=value).get(timeout=30)


def expected_rows(games: list[GameRecord]) -> Counter[tuple[str, int]]:
    return Counter((g.game_id, m) for g in games for m in range(len(g.moves)))


def published_rows(dataset: Path) -> Counter[tuple[str, int]]:
    rows = load_npz_dataset(dataset / "current" / "train.npz").rows
    return Counter(zip(rows.game_id.tolist(), rows.move_number.tolist()))


def versions(dataset: Path) -> list[str]:
    return sorted(p.name for p in dataset.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and not p.is_symlink())


def committed(bootstrap: str, group: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return sum(o.offset for tp, o in offsets.items() if tp.topic == topic)


def service(bootstrap: str, topic: str, store: Path, out: Path, group: str,
            **kw: object) -> FinalizerService:
    conn = KafkaConnection(bootstrap_servers=bootstrap)
    kw.setdefault("options", CompactOptions(keep_versions=2))
    return FinalizerService(conn, chunks_topic=topic, store_dir=store, output_dir=out,
                            every_s=60.0, group=group, **kw)  # type: ignore[arg-type]


def test_announced_chunks_become_dataset_versions(kafka_bootstrap: str, topic: str,
                                                  topic_prefix: str, tmp_path: Path,
                                                  producer: KafkaProducer,
                                                  records: list[GameRecord]) -> None:
    store = ChunkStore(tmp_path / "chunks")
    stream = topic_stream_id(f"{topic_prefix}.games", 0)
    group = f"{topic_prefix}-fin"
    first = seal(store, records[:4], stream)
    assert len(first) >= 2  # several chunks per publish
    key = first[0].config_key
    dataset = tmp_path / "datasets" / key
    announce(producer, topic, *map(announcement_for, first))

    with service(kafka_bootstrap, topic, store.root, tmp_path / "datasets", group) as fin:
        report = fin.run_once()
        assert report.accepted == len(first) and report.ignored == 0 and report.committed
        assert report.published[key].rows == sum(len(g.moves) for g in records[:4])
        assert published_rows(dataset) == expected_rows(records[:4])
        v1 = versions(dataset)
        assert len(v1) == 1 and os.readlink(dataset / "current") == v1[0]
        v1_manifest = (dataset / v1[0] / "manifest.json").read_bytes()

        second = seal(store, records[4:7], stream)
        announce(producer, topic, *map(announcement_for, second))
        report = fin.run_once()
        assert report.accepted == len(second) and set(report.published) == {key}
        assert published_rows(dataset) == expected_rows(records[:7])
        v2 = versions(dataset)
        assert len(v2) == 2 and v2[0] == v1[0] and os.readlink(dataset / "current") == v2[1]
        assert (dataset / v1[0] / "manifest.json").read_bytes() == v1_manifest  # old kept
        listed = {c["file"] for c in read_manifest(dataset)["chunks"]}
        assert listed == {c.path.name for c in first + second}

        third = seal(store, records[7:], stream)
        announce(producer, topic, *map(announcement_for, third))
        fin.run_once()
        assert published_rows(dataset) == expected_rows(records)
        v3 = versions(dataset)
        assert len(v3) == 2 and v3[0] == v2[1] and v1[0] not in v3  # keep_versions=2 prunes

        assert fin.run_once().published == {}  # nothing new, nothing republished
    assert committed(kafka_bootstrap, group, topic) == len(first + second + third)


def test_forged_announcements_are_ignored_and_logged(
        kafka_bootstrap: str, topic: str, topic_prefix: str, tmp_path: Path,
        producer: KafkaProducer, records: list[GameRecord],
        consumer_logs: pytest.LogCaptureFixture) -> None:
    store = ChunkStore(tmp_path / "chunks")
    chunk = seal(store, records[:2], topic_stream_id(f"{topic_prefix}.games", 1))[0]
    real = announcement_for(chunk)
    assert real.name == f"{chunk.config_key}/{chunk.name.filename}"  # never a local path
    outside = tmp_path / "elsewhere" / chunk.name.filename
    outside.parent.mkdir()
    shutil.copyfile(store.local_path(chunk.config_key, chunk.name), outside)
    gone = ChunkName(chunk.name.stream, 10**6, 10**6 + chunk.name.last - chunk.name.first)
    forged = {
        "absolute": real.model_copy(update={"name": str(outside)}),
        "traversal": real.model_copy(update={
            "name": f"{chunk.config_key}/../../elsewhere/{chunk.name.filename}"}),
        "other_folder": real.model_copy(update={"name": f"elsewhere/{chunk.name.filename}"}),
        "wrong_sha": real.model_copy(update={"sha256": "0" * 64}),
        "other_key": real.model_copy(update={"config_key": "connect_x"}),
        "missing": real.model_copy(update={"name": f"{chunk.config_key}/{gone.filename}",
                                           "first": gone.first, "last": gone.last}),
    }
    group = f"{topic_prefix}-fin"
    out = tmp_path / "datasets"
    with service(kafka_bootstrap, topic, store.root, out, group) as fin:
        assert set(fin.run_once().published) == {chunk.config_key}  # catch-up from the store
        consumer_logs.clear()
        announce(producer, topic, *forged.values())
        producer.send(topic, key=b"k", value=b"{not json").get(timeout=30)
        report = fin.run_once()
    assert (report.accepted, report.ignored, report.published) == (0, 7, {})
    assert report.committed  # refused announcements are not read again
    assert committed(kafka_bootstrap, group, topic) == 7
    ignored = [r for r in consumer_logs.records if r.getMessage() == "chunk announcement ignored"]
    assert len(ignored) == 7 and all(r.levelno == logging.WARNING for r in ignored)
    reasons = [r.reason for r in ignored]  # type: ignore[attr-defined]
    # Key order of the topic's two partitions is by config key, so sort by message.
    assert sorted(reasons) == sorted([
        "the name is not <config key>/<chunk> of the announced configuration",
        "the name is not <config key>/<chunk> of the announced configuration",
        "the name is not <config key>/<chunk> of the announced configuration",
        f"sha256 {chunk.sha256} differs from the announced {'0' * 64}",
        "the name is not <config key>/<chunk> of the announced configuration",
        "the chunk cannot be read: No such file or directory",
        "invalid announcement: Invalid JSON: key must be a string at line 1 column 2",
    ])
    assert {r.chunk for r in ignored if hasattr(r, "chunk")} >= {  # type: ignore[attr-defined]
        str(outside), f"elsewhere/{chunk.name.filename}"}
    assert len(versions(out / chunk.config_key)) == 1


def test_a_crash_between_publish_and_commit_republishes_the_same_rows(
        kafka_bootstrap: str, topic: str, topic_prefix: str, tmp_path: Path,
        producer: KafkaProducer, records: list[GameRecord],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = ChunkStore(tmp_path / "chunks")
    sealed = seal(store, records[:5], topic_stream_id(f"{topic_prefix}.games", 0))
    key = sealed[0].config_key
    out = tmp_path / "datasets"
    group = f"{topic_prefix}-fin"
    announce(producer, topic, *map(announcement_for, sealed))

    def crash(self: KafkaConsumer, *args: object, **kwargs: object) -> None:
        raise RuntimeError("killed between publish and commit")

    crashing = service(kafka_bootstrap, topic, store.root, out, group)
    monkeypatch.setattr(KafkaConsumer, "commit", crash)
    with pytest.raises(RuntimeError, match="killed between publish and commit"):
        crashing.run_once()
    monkeypatch.undo()
    crashing.close()
    assert published_rows(out / key) == expected_rows(records[:5])
    assert committed(kafka_bootstrap, group, topic) == 0

    with service(kafka_bootstrap, topic, store.root, out, group) as fin:
        report = fin.run_once()
    assert report.accepted == len(sealed) and report.committed  # read again, published again
    assert len(versions(out / key)) == 2
    assert published_rows(out / key) == expected_rows(records[:5])  # no row twice
    assert committed(kafka_bootstrap, group, topic) == len(sealed)


def test_run_catches_up_with_the_store_and_stops_on_the_event(
        kafka_connection: KafkaConnection, topic: str, topic_prefix: str, tmp_path: Path,
        producer: KafkaProducer, records: list[GameRecord]) -> None:
    store = ChunkStore(tmp_path / "chunks")
    stream = topic_stream_id(f"{topic_prefix}.games", 0)
    key = seal(store, records[:3], stream)[0].config_key  # sealed while no finalizer ran
    dataset = tmp_path / "datasets" / key
    stop = threading.Event()
    with FinalizerService(kafka_connection, chunks_topic=topic, store_dir=store.root,
                          output_dir=tmp_path / "datasets", options=CompactOptions(),
                          every_s=0.3, group=f"{topic_prefix}-fin") as fin:
        worker = threading.Thread(target=fin.run, args=(stop,))
        worker.start()
        try:
            deadline = time.monotonic() + 15
            while not (dataset / "current").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert published_rows(dataset) == expected_rows(records[:3])
            announce(producer, topic, *map(announcement_for, seal(store, records[3:5], stream)))
            while published_rows(dataset) != expected_rows(records[:5]) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            assert published_rows(dataset) == expected_rows(records[:5])
        finally:
            stop.set()
            worker.join(timeout=5)
        assert not worker.is_alive()


def test_retention_deletes_published_chunks_but_each_streams_newest(
        kafka_bootstrap: str, topic: str, topic_prefix: str, tmp_path: Path,
        records: list[GameRecord]) -> None:
    store = ChunkStore(tmp_path / "chunks")
    sealed = seal(store, records[:4], topic_stream_id(f"{topic_prefix}.games", 0))
    assert len(sealed) >= 3
    with service(kafka_bootstrap, topic, store.root, tmp_path / "datasets",
                 f"{topic_prefix}-fin", retention_s=0.0) as fin:
        report = fin.run_once()
    newest = max(sealed, key=lambda c: c.name.last)
    assert sorted(report.deleted) == sorted(c.path for c in sealed if c is not newest)
    assert [p for _, p in store.sealed(sealed[0].config_key)] == [newest.path]
    assert published_rows(tmp_path / "datasets" / sealed[0].config_key) \
        == expected_rows(records[:4])


def test_cli_once_creates_the_topic_publishes_and_reports(
        kafka_bootstrap: str,
        kafka_connection: KafkaConnection, topic_prefix: str, tmp_path: Path,
        producer: KafkaProducer,
        records: list[GameRecord]) -> None:
    topic = f"{topic_prefix}.chunks"
    store = ChunkStore(tmp_path / "chunks")
    args = ["--bootstrap", kafka_bootstrap, "--chunks", str(store.root),
            "--output", str(tmp_path / "datasets"), "--chunks-topic", topic,
            "--group", f"{topic_prefix}-fin", "--once", "--val-fraction", "0.3",
            "--keep-versions", "1"]
    result = CliRunner().invoke(finalize_cmd, args)
    assert result.exit_code == 0, result.output
    assert "announcements=0 ignored_announcements=0 datasets=0 rows=0 " in result.output
    # The topic now exists with the settings `playstream stream` checks (1 partition).
    ensure_topics(kafka_connection, {topic: 1})

    sealed = seal(store, records[:3], topic_stream_id(f"{topic_prefix}.games", 0))
    announce(producer, topic, *map(announcement_for, sealed))
    result = CliRunner().invoke(finalize_cmd, args)
    assert result.exit_code == 0, result.output
    rows = sum(len(g.moves) for g in records[:3])
    assert f"announcements={len(sealed)} ignored_announcements=0 datasets=1 rows={rows} " \
        in result.output
    manifest = read_manifest(tmp_path / "datasets" / sealed[0].config_key)
    assert manifest["totals"]["rows"] == rows and manifest["totals"]["val_rows"] > 0
    assert manifest["options"]["keep_versions"] == 1


def test_cli_runs_until_sigterm(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path,
                                records: list[GameRecord]) -> None:
    store = ChunkStore(tmp_path / "chunks")
    key = seal(store, records[:2], topic_stream_id(f"{topic_prefix}.games", 0))[0].config_key
    proc = subprocess.Popen(
        [sys.executable, "-c", "from playstream.cli.finalize import finalize_cmd; finalize_cmd()",
         "--bootstrap", kafka_bootstrap, "--chunks", str(store.root),
         "--output", str(tmp_path / "datasets"), "--chunks-topic", f"{topic_prefix}.chunks",
         "--group", f"{topic_prefix}-fin", "--every", "1s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "datasets" / key / "current").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert published_rows(tmp_path / "datasets" / key) == expected_rows(records[:2])


@pytest.mark.parametrize("flag, value, message", [
    ("--every", "10", "'10' is not a duration: give a number and a unit, ms, s, m, h or d"),
    ("--every", "5 min", "'5 min' is not a duration"),
    ("--every", "0s", "0s is out of range: at most 10 years, and more than 0"),
    ("--retain-after", "11000d", "11000d is out of range: at most 10 years"),
    ("--retain-after", "-1d", "'-1d' is not a duration"),
])
def test_durations_are_checked(tmp_path: Path, flag: str, value: str, message: str) -> None:
    result = CliRunner().invoke(finalize_cmd, [
        "--bootstrap", "127.0.0.1:1", "--chunks", str(tmp_path), "--output", str(tmp_path),
        flag, value])
    assert result.exit_code == 2
    assert message in result.output
    assert f"Invalid value for '{flag}'" in result.output
