"""Processors on different "machines" sharing only an S3 chunk store (S3Proxy, started by
deploy/s3/s3.sh) and a real Kafka broker: no shared local folder, no flock. Two `stream`
commands share the partitions; one is SIGKILLed and restarted, one is SIGSTOPped through a
rebalance and SIGCONTed, S3Proxy is restarted while a processor runs; then `finalize`
publishes to S3 and `validate`/`inspect` read it. Every game's rows are in the dataset exactly
once: the multiset of (game_id, move_number) equals what was published."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest
from kafka import KafkaProducer

from playstream.chunks import ChunkStore
from playstream.compaction import CompactOptions, compact, read_manifest
from playstream.compaction.cover import chunk_cover
from playstream.dataset import load_npz_dataset
from playstream.storage import download, open_storage
from playstream.storage.locals3 import LocalS3
from test_stream_kafka import (CONFIG_KEY, Processor, Published, Topics,
                               end_offsets, games, processors, producer, publish, summary,
                               topics)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
__all__ = ["processors", "producer", "topics"]   # fixtures used by name

ARGS = ("--chunk-rows", "300", "--chunk-age", "1s")


def cover_end(store: ChunkStore) -> dict[int, int]:
    """Per partition, the last offset the cover of its chunks reaches contiguously."""
    if CONFIG_KEY not in store.config_keys():
        return {}
    cover, _ = chunk_cover(store.chunks(CONFIG_KEY))
    reached: dict[int, int] = {}
    for n in cover:
        p = int(n.stream.rpartition("+")[2])
        if reached.get(p, -1) == n.first - 1:
            reached[p] = n.last
    return reached


def sealed_to(store: ChunkStore, ends: dict[int, int]) -> Callable[[], bool]:
    return lambda: all(end == 0 or cover_end(store).get(p) == end - 1
                       for p, end in ends.items())


def wait(what: str, done: Callable[[], bool], timeout: float,
         running: list[Processor]) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        for p in running:
            assert p.proc.poll() is None, f"processor exited early\n{p.logs()}"
        assert time.monotonic() < deadline, (f"{what}: not within {timeout} s\n"
                                             + "\n".join(p.logs() for p in running))
        time.sleep(0.5)


def published_rows(published: list[Published]) -> Counter[tuple[str, int]]:
    return Counter((m.record.game_id, t) for m in published if m.record is not None
                   for t in range(len(m.record.moves)))


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "playstream", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_two_processors_on_s3_killed_paused_and_a_restarted_server_count_every_row_once(
        topics: Topics, producer: KafkaProducer, processors: list[Processor],
        s3_server: LocalS3, s3_env: dict[str, str], s3_bucket: str, s3_prefix: str,
        tmp_path: Path) -> None:
    base = f"s3://{s3_bucket}/{s3_prefix}"
    chunks = f"{base}/chunks"
    store = ChunkStore(chunks)
    published = publish(producer, topics.games, games(seed=41, count=80))
    # Each processor has its own working folder and only the S3 URL in common.
    a = Processor(topics, chunks, tmp_path / "a", *ARGS)
    b = Processor(topics, chunks, tmp_path / "b", *ARGS)
    processors += [a, b]
    wait("both processors sealed every offset", sealed_to(store, end_offsets(topics)), 90,
         [a, b])

    # SIGKILL one mid-stream, restart it.
    published += publish(producer, topics.games, games(seed=42, count=40))
    a.kill()
    a2 = Processor(topics, chunks, tmp_path / "a2", *ARGS)
    processors.append(a2)
    wait("sealed after SIGKILL and restart", sealed_to(store, end_offsets(topics)), 120,
         [a2, b])

    # SIGSTOP b through a rebalance: a2 takes its partitions after the session timeout
    # (10 s) and seals past what b holds open; SIGCONT b, which must not add a chunk that
    # overlaps (its seal lists first and refuses), or if the race lets one through the
    # cover leaves it out.
    os.kill(b.pid, signal.SIGSTOP)
    try:
        published += publish(producer, topics.games, games(seed=43, count=40))
        wait("a2 sealed b's partitions while b was paused", sealed_to(store, end_offsets(topics)),
             120, [a2])
    finally:
        os.kill(b.pid, signal.SIGCONT)
    # S3Proxy restarted (SIGTERM, same data) while the processors run and records arrive.
    published += publish(producer, topics.games, games(seed=44, count=40))
    s3_server.restart()
    published += publish(producer, topics.games, games(seed=45, count=20))
    wait("sealed after the S3 restart", sealed_to(store, end_offsets(topics)), 180, [a2])
    fate = {}
    for name, p in (("a2", a2), ("b", b)):
        if p.proc.poll() is None:
            code, _, out = p.stop(timeout=40)
            assert code == 0, p.logs()
            fate[name] = summary(out)["processed"]
        else:   # b may have stopped on its refused overlapping seal; never silently
            assert "overlaps the sealed chunk" in p.err.read_text(), p.logs()
            fate[name] = "stopped: refused an overlapping seal"
    if isinstance(fate["b"], int):
        assert fate["b"] > 0   # b owned partitions: it sealed records before and after

    # Every offset once at the store level: compacting the cover without dedup.
    want = published_rows(published)
    raw = compact(store, CONFIG_KEY, tmp_path / f"raw-{uuid.uuid4().hex}.npz",
                  CompactOptions(dedup=False))
    rows = load_npz_dataset(raw.outputs[0]).rows
    assert Counter(zip(rows.game_id.tolist(), rows.move_number.tolist())) == want

    # The finalizer publishes to S3; validate and inspect read it back from there.
    fin = cli("finalize", "--bootstrap", topics.bootstrap, "--chunks", chunks,
              "--output", f"{base}/datasets", "--chunks-topic", topics.chunks,
              "--group", f"{topics.group}-fin", "--once", "--val-fraction", "0.1")
    assert fin.returncode == 0, fin.stderr
    dataset = f"{base}/datasets/{CONFIG_KEY}"
    manifest = read_manifest(dataset)
    version = open_storage(dataset).read("current").decode().strip()
    got: Counter[tuple[str, int]] = Counter()
    for out in manifest["outputs"]:
        url = f"{dataset}/{version}/{out['file']}"
        checked = cli("validate", url)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        folder = tmp_path / uuid.uuid4().hex
        folder.mkdir()
        shard = load_npz_dataset(download(url, folder)).rows
        got.update(zip(shard.game_id.tolist(), shard.move_number.tolist()))
    assert got == want
    shown = cli("inspect", dataset)
    assert shown.returncode == 0 and f"dataset {CONFIG_KEY}" in shown.stdout, shown.stderr
    totals = json.loads(shown.stdout[shown.stdout.index("{"):shown.stdout.index("}") + 1])
    assert totals["rows"] == sum(want.values())
    print(f"chunks {len(store.chunks(CONFIG_KEY))}, superseded {manifest['superseded']}, "
          f"rows {sum(want.values())}, processed after the pause: {fate}")
