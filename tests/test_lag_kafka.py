"""The processors' consumer group tells Kafka's own tools the truth: after every seal it
commits one past the newest sealed offset, so `kafka-consumer-groups --describe` (Kafka's
`ConsumerGroupCommand`, run from the fetched jars through `kafka.sh groups`) prints the
records that are not yet in a chunk, checked here against the chunk store."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from playstream.chunks import ChunkStore
# processors, producer and topics are fixtures, used by name
from test_stream_kafka import (PARTITIONS, Processor, Topics, all_sealed,  # noqa: F401
                               assert_exactly_once, covered, end_offsets, games, processors,
                               producer, publish, seals_settled, topics, wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KAFKA_SH = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "kafka.sh"


def describe_group(t: Topics) -> dict[int, tuple[int | None, int, int | None]]:
    """partition → (CURRENT-OFFSET, LOG-END-OFFSET, LAG) as Kafka's own tool prints them
    (None for its "-": nothing committed)."""
    run = subprocess.run(["bash", str(KAFKA_SH), "groups", "--bootstrap-server", t.bootstrap,
                          "--describe", "--group", t.group],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows: dict[int, tuple[int | None, int, int | None]] = {}
    for line in run.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 6 and cols[0] == t.group and cols[1] == t.games:
            def num(text: str) -> int | None:
                return None if text == "-" else int(text)
            rows[int(cols[2])] = (num(cols[3]), int(cols[4]), num(cols[5]))
    return rows


def sealed_through(store: ChunkStore) -> dict[int, int]:
    """One past the newest sealed offset of each partition, from the chunk names alone."""
    ranges = covered(store)
    return {p: ranges[p][-1][1] + 1 if p in ranges else 0 for p in range(PARTITIONS)}


def wait_for_lag(t: Topics, want: dict[int, int], timeout: float) -> dict[int, tuple]:
    """Until the tool's LAG column equals ``want``; returns its last output."""
    deadline = time.monotonic() + timeout
    while True:
        rows = describe_group(t)
        if {p: r[2] for p, r in rows.items()} == want or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def test_kafka_consumer_groups_shows_the_sealed_lag_after_catch_up_and_sigkill(
        topics: Topics, producer: KafkaProducer, processors: list[Processor],
        tmp_path: Path) -> None:
    published = publish(producer, topics.games, games(seed=31, count=120))
    ends = end_offsets(topics)
    store = ChunkStore(tmp_path / "store")
    # seals at 400 rows only: the tails stay open, so the lag is not 0 while it runs
    first = Processor(topics, store.root, tmp_path / "p1", "--chunk-rows", "400",
                      "--chunk-age", "10m")
    processors.append(first)

    wait_for("first seals on every partition", seals_settled(store), 40, processors)
    through = sealed_through(store)
    want = {p: ends[p] - through[p] for p in range(PARTITIONS)}
    assert any(want.values()), (ends, through)  # records were left unsealed
    # while it runs: the tool sees exactly the unsealed records
    running = wait_for_lag(topics, want, 20)
    assert running == {p: (through[p], ends[p], want[p]) for p in range(PARTITIONS)}, \
        (running, first.logs())
    first.kill()
    # SIGKILL: nothing else is committed, and the lag stays the truth
    killed = describe_group(topics)
    assert killed == running
    second = Processor(topics, store.root, tmp_path / "p2", "--chunk-rows", "400",
                       "--chunk-age", "1s")
    processors.append(second)
    wait_for("all offsets sealed after the restart", all_sealed(store, ends), 45, [second])
    caught_up = wait_for_lag(topics, {p: 0 for p in range(PARTITIONS)}, 20)
    assert caught_up == {p: (ends[p], ends[p], 0) for p in range(PARTITIONS)}, second.logs()
    assert sealed_through(store) == ends
    code, _, _ = second.stop()
    assert code == 0, second.logs()
    # a clean stop commits nothing beyond the sealed offsets either
    assert describe_group(topics) == caught_up
    assert_exactly_once(store, published, tmp_path)
