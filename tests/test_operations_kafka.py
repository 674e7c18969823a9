"""Operating the pipeline against a real broker: the Prometheus endpoint of a running
`playstream stream` counts exactly what was published and sealed, and `playstream status`
reports offsets, lag, dead letters, chunks, datasets and group members whether or not the
processors run, and serves as a check (exit 1 past a threshold)."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
from kafka import KafkaProducer

from playstream.chunks import ChunkStore
from playstream.compaction.inventory import store_inventory
from playstream.dataset import read_metadata
# processors, producer and topics are fixtures, used by name
from test_stream_kafka import (CONFIG_KEY, PARTITIONS, Processor, Published,  # noqa: F401
                               Topics, all_sealed, end_offsets, games, processors, producer,
                               publish, topics, wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = [sys.executable, "-m", "playstream.cli"]
POISON = [(b"garbage", b"\xc1\xc1 not msgpack"), (b"tombstone", None)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name → {labels: value} of the Prometheus text format."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m[2] or "")))
            out[m[1]][labels] = float(m[3])
    return out


def publish_with_poison(producer: KafkaProducer, t: Topics, seed: int,
                        count: int) -> list[Published]:
    """``count`` valid games, with the poison messages on partition 1 in the middle."""
    records = games(seed=seed, count=count)
    published = publish(producer, t.games, records[:count // 2])
    for key, value in POISON:
        meta = producer.send(t.games, key=key, value=value, partition=1).get(timeout=30)
        published.append(Published(1, meta.offset, None))
    return published + publish(producer, t.games, records[count // 2:])


def status(t: Topics, store: Path, *args: str) -> tuple[int, dict, str]:
    run = subprocess.run([*CLI, "status", "--bootstrap-server", t.bootstrap, "--topic", t.games,
                          "--dlq-topic", t.dlq, "--group", t.group, "--chunks", str(store),
                          "--json", *args], capture_output=True, text=True, timeout=120)
    return run.returncode, json.loads(run.stdout), run.stderr


def test_metrics_of_a_running_processor_equal_what_was_published_and_sealed(
        topics: Topics, producer: KafkaProducer, processors: list[Processor],
        tmp_path: Path) -> None:
    published = publish_with_poison(producer, topics, seed=41, count=60)
    port = free_port()
    store = ChunkStore(tmp_path / "store")
    processors.append(Processor(topics, store.root, tmp_path / "p1", "--chunk-rows", "500",
                                "--chunk-age", "1s", "--metrics-port", str(port)))
    base = f"http://127.0.0.1:{port}"
    wait_for("the metrics endpoint", lambda: _serves(base), 30, processors)
    ends = end_offsets(topics)
    wait_for("all offsets sealed", all_sealed(store, ends), 45, processors)
    wait_for("ready", lambda: get(f"{base}/readyz")[0] == 200, 30, processors)
    assert get(f"{base}/healthz") == (200, "ok\n")
    time.sleep(2)  # a tick after the last seal, for the lag gauges
    metrics = samples(get(f"{base}/metrics")[1])

    records = metrics["playstream_records_total"]
    assert sum(records.values()) == len(published)
    per_partition = defaultdict(int)
    for m in published:
        per_partition[m.partition] += 1
    assert {dict(k)["partition"]: v for k, v in records.items()} == {
        str(p): n for p, n in per_partition.items()}
    chunk_files = store.sealed(CONFIG_KEY)
    rows = sum(int(read_metadata(path)["rows"]) for _, path in chunk_files)
    assert metrics["playstream_rows_sealed_total"] == {(("config", CONFIG_KEY),): rows}
    assert metrics["playstream_chunks_sealed_total"] == {
        (("config", CONFIG_KEY),): len(chunk_files)}
    assert sum(metrics["playstream_invalid_records_total"].values()) == len(POISON)
    assert metrics["playstream_dead_letters_total"] == {(("topic", topics.dlq),): len(POISON)}
    assert metrics["playstream_publish_to_sealed_seconds_count"][()] == len(published)
    assert metrics["playstream_seal_duration_seconds_count"][()] >= len(chunk_files) / 4
    assert set(metrics["playstream_partition_lag"].values()) == {0.0}
    assert metrics["playstream_open_chunk_rows"][()] == 0
    assert get(f"{base}/nothing")[0] == 404
    code, _, _ = processors[0].stop()
    assert code == 0, processors[0].logs()


def _serves(base: str) -> bool:
    try:
        return get(f"{base}/healthz")[0] == 200
    except OSError:
        return False


def test_status_reports_lag_dead_letters_datasets_and_members(
        topics: Topics, producer: KafkaProducer, processors: list[Processor],
        tmp_path: Path) -> None:
    published = publish_with_poison(producer, topics, seed=42, count=40)
    store = ChunkStore(tmp_path / "store")
    processors.append(Processor(topics, store.root, tmp_path / "p1", "--chunk-rows", "500",
                                "--chunk-age", "1s"))
    ends = end_offsets(topics)
    wait_for("all offsets sealed", all_sealed(store, ends), 45, processors)
    output = tmp_path / "datasets"
    finalize = subprocess.run([*CLI, "finalize", "--bootstrap-server", topics.bootstrap,
                               "--chunks", str(store.root), "--output", str(output),
                               "--chunks-topic", topics.chunks, "--group",
                               f"{topics.group}-fin", "--once"],
                              capture_output=True, text=True, timeout=120)
    assert finalize.returncode == 0, finalize.stderr

    # while the processor runs and everything is sealed
    code, report, err = status(topics, store.root, "--output", str(output), "--max-lag", "0",
                               "--max-dataset-age", "1h")
    assert code == 0, err
    assert [(p["topic"], p["partition"], p["end_offset"], p["sealed_through"], p["lag"],
             p["committed"]) for p in report["partitions"]] == [
        (topics.games, p, ends[p], ends[p], 0, ends[p]) for p in range(PARTITIONS)]
    assert report["dead_letters"]["records"] == len(POISON)
    assert [d["reason"].split(":")[0] for d in report["dead_letters"]["newest"]] == [
        "the message has no value (a tombstone)", "not a msgpack record"]
    inventory = store_inventory(store)
    [config] = report["configurations"]
    assert (config["config_key"], config["chunks"], config["rows"], config["games"]) == (
        CONFIG_KEY, len(store.sealed(CONFIG_KEY)), inventory.configurations[0].rows, 40)
    assert config["dataset"]["rows"] == config["rows"]
    assert 0 <= config["dataset"]["age_s"] < 120
    [processors_group, finalizer_group] = report["groups"]
    assert processors_group["group"] == topics.group
    [member] = processors_group["members"]
    assert member["client_id"] == "playstream-stream"
    assert member["partitions"] == [f"{topics.games}:{p}" for p in range(PARTITIONS)]

    # stopped, with new games: the lag is what was published since, and the oldest
    # unsealed record is as old as the first of them
    code, _, _ = processors[0].stop()
    assert code == 0, processors[0].logs()
    before = time.time()
    extra = publish(producer, topics.games, games(seed=43, count=12))
    time.sleep(1.5)
    code, report, err = status(topics, store.root, "--max-lag", "0")
    assert code == 1
    want = defaultdict(int)
    for m in extra:
        want[m.partition] += 1
    lags = {p["partition"]: p["lag"] for p in report["partitions"]}
    assert lags == {p: want[p] for p in range(PARTITIONS)}
    for p in report["partitions"]:
        if p["lag"]:
            assert 1.0 <= p["oldest_unsealed_age_s"] <= time.time() - before + 1
        else:
            assert p["oldest_unsealed_age_s"] is None
    assert report["groups"][0]["members"] == []
    assert "lags by" in err and "--max-lag 0" in err
    code, _, err = status(topics, store.root, "--max-lag", str(max(want.values())))
    assert code == 0, err
    code, _, err = status(topics, store.root, "--output", str(output),
                          "--max-dataset-age", "500ms")
    assert code == 1 and "old (--max-dataset-age" in err
