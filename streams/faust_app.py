"""The faust-streaming driver of `StreamProcessor` (verified on faust-streaming 0.15.3,
aiokafka 0.14.0, Kafka 4.3.1; see deploy/kafka/NOTES.md).

faust owns the group membership and the fetching; the processor owns progress. What makes
faust honour that:

* On assignment the processor resumes each partition from its chunk names. Before the
  partitions resume, faust's recovery seeks every partition to its committed offset, which
  would override a bare seek; so the ``on_rebalance_complete`` handler, which faust awaits
  right before that recovery seek, seeks **and commits** the resume offsets
  (`Consumer._commit`, internal API). Doing this in ``on_partitions_assigned`` instead, as
  first tried, races with the recovery seek: on 2026-11-24 a restart after a crash that had
  committed offset 36 saw faust fetch the committed 36 for partition 0 before the commit of 0
  landed, and partition 0 never read its unsealed records.
* faust may deliver records twice at start-up (it resumes fetching before that recovery
  seek); the processor drops offsets below the resume point.
* ``stream_wait_empty=False``: otherwise a stop with events in flight waits forever.
* The web server is off (``web_enabled=False``): every worker would bind 0.0.0.0:6066.
* faust commits nothing of the games topic: the topic is declared with ``acks=False``, so
  faust tracks no acknowledged offsets for it, neither periodically nor on stop or
  rebalance (its acknowledged offsets ran ahead of the sealed ones, and faust #606 can skip
  an unacknowledged one). Instead, after every seal, `SealedCommits` commits per partition
  one past the newest sealed offset (`StreamProcessor.sealed_through`), so the group's
  committed offsets are the chunk store's progress and ``kafka-consumer-groups --describe``
  shows the real lag: 0 once everything is sealed. Nothing reads them back as truth: the
  handler above overwrites them from the chunk names before every recovery seek.
* A failure in the agent or the timer stops the worker (``CrashingSupervisor``): faust's
  default supervisor restarts a crashed agent after the failed record, and the next seal
  would cover that offset without it (seen on 2026-11-24: a chunk 0..16 without offset 5).

Dead letters and announcements go through a kafka-python producer, not faust's: the
processor's callbacks are synchronous (it runs inside the agent between two events), and a
dead letter must be acknowledged by the broker before the chunk covering its offset can seal,
which a synchronous ``send().get()`` gives and faust's coroutine producer cannot from there.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from kafka import KafkaProducer
from kafka.errors import KafkaError
from mode import CrashingSupervisor

from playstream.chunks import ChunkStore, SealedChunk
from playstream.clients.kafka import KafkaConnection, kafka_errors
from playstream.errors import PlaystreamError, error_text
from playstream.metrics import NULL_METRICS, Metrics
from playstream.topics import MAX_MESSAGE_BYTES
from playstream.topics import PROCESSOR_GROUP
from playstream.streams.announce import announcement_for, encode_announcement
from playstream.streams.deadletter import DeadLetter, encode_dead_letter
from playstream.streams.processor import StreamProcessor
from playstream.streams.starts import TimestampStart

# faust's own commit triggers; they find nothing to commit for the games topic (acks off).
COMMIT_EVERY = 10**9
COMMIT_INTERVAL_S = 30.0
# A killed processor's partitions move to the others this long after its last heartbeat.
SESSION_TIMEOUT_S = 10.0
DEAD_LETTER_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 10.0
MIN_TICK_S = 0.25
MAX_TICK_S = 5.0

log = logging.getLogger("playstream.streams")


class SideOutputs:
    """The dead-letter and chunks topics, written with one idempotent ``acks=all``
    kafka-python producer sized for the largest record."""

    def __init__(self, kafka: KafkaConnection, *, dlq_topic: str, chunks_topic: str,
                 metrics: Metrics = NULL_METRICS) -> None:
        self.dlq_topic = dlq_topic
        self.chunks_topic = chunks_topic
        self._metrics = metrics
        with kafka_errors(kafka):
            self._producer = KafkaProducer(
                **kafka.kafka_python_kwargs(), client_id="playstream-stream",
                acks="all", enable_idempotence=True, linger_ms=5,
                max_request_size=MAX_MESSAGE_BYTES, allow_auto_create_topics=False)

    def dead_letter(self, letter: DeadLetter) -> None:
        """Blocks until the broker has it (see the module docstring for why)."""
        message = encode_dead_letter(letter)
        try:
            self._producer.send(self.dlq_topic, value=message.value, key=message.key,
                                headers=message.headers).get(timeout=DEAD_LETTER_TIMEOUT_S)
        except KafkaError as err:
            raise PlaystreamError(f"cannot write the dead letter: {error_text(err)}",
                                  topic=self.dlq_topic, source_topic=letter.topic,
                                  partition=letter.partition, offset=letter.offset) from None
        self._metrics.dead_lettered(self.dlq_topic)
        log.warning("record dead-lettered", extra={
            "topic": letter.topic, "partition": letter.partition, "offset": letter.offset,
            "field": letter.field, "game_id": letter.game_id, "reason": letter.reason[:500]})

    def announce(self, chunk: SealedChunk) -> None:
        """Sent in the background; a failure is logged, not raised: the chunk is sealed and
        the store, not the announcement, is the record of it."""
        key, value = encode_announcement(announcement_for(chunk))
        try:
            future = self._producer.send(self.chunks_topic, value=value, key=key)
        except KafkaError as err:
            self._announce_failed(chunk, err)
        else:
            future.add_errback(self._announce_failed, chunk)

    @staticmethod
    def _announce_failed(chunk: SealedChunk, error: BaseException) -> None:
        log.error("chunk announcement failed", extra={"chunk": chunk.object_name,
                                                      "error": repr(error)})

    def close(self) -> None:
        self._producer.close(timeout=CLOSE_TIMEOUT_S)


class SealedCommits:
    """Commits the processor's sealed-through offsets as the group's offsets, for the lag
    tools (see the module docstring); only partitions that moved since the last commit."""

    def __init__(self, app: faust.App, processor: StreamProcessor, topic: str) -> None:
        self._app = app
        self._processor = processor
        self._topic = topic
        self._committed: dict[int, int] = {}

    async def commit(self, offsets: dict[int, int] | None = None) -> None:
        """Commit ``offsets`` (partition → offset) unconditionally, or by default the
        sealed-through offsets that changed since the last commit. A commit refused because
        the group is rebalancing is simply skipped: the next owner commits its own resume
        offsets."""
        assignment = self._app.consumer.assignment()
        if offsets is None:
            offsets = {p: o for p, o in self._processor.sealed_through().items()
                       if self._committed.get(p) != o}
        todo = {TP(self._topic, p): o for p, o in offsets.items()
                if TP(self._topic, p) in assignment}
        if todo and await self._app.consumer._commit(todo):
            self._committed.update({tp.partition: o for tp, o in todo.items()})

    def forget(self, partition: int) -> None:
        """The partition was revoked: its next owner's commit is the one that counts."""
        self._committed.pop(partition, None)


class ProcessorApp(faust.App):
    """A faust app that drives one `StreamProcessor` (kept here for the worker's summary and
    the readiness check). ``consumed_lag``: per assigned partition, the records between the
    next offset to process and the end of the partition, as of the last tick."""

    processor: StreamProcessor
    consumed_lag: dict[int, int]

    def readiness(self, max_lag: int) -> tuple[bool, str]:
        """Ready when it holds partitions and each is within ``max_lag`` records of its end."""
        assigned = self.processor.assigned
        if not assigned:
            return False, "no partition assigned"
        lag = dict(self.consumed_lag)  # a copy: this runs in the metrics server's thread
        behind = {p: lag.get(p) for p in assigned if lag.get(p) is None or lag[p] > max_lag}
        if behind:
            return False, f"partitions behind by more than {max_lag} records: {behind}"
        return True, f"partitions {assigned} caught up"


def faust_datadir(group: str) -> Path:
    """Where faust creates its data folders on start (they stay empty: no tables). One per
    group under the temporary folder, so that neither the working directory nor a killed
    worker leaves folders behind."""
    digest = hashlib.sha256(group.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"playstream-faust-{digest}"


def tick_interval(max_age_s: float | None) -> float:
    """Often enough that a quiet partition seals within about a quarter of the chunk age."""
    if max_age_s is None:
        return MAX_TICK_S
    return min(MAX_TICK_S, max(MIN_TICK_S, max_age_s / 4))


def build_app(kafka: KafkaConnection, *, group: str = PROCESSOR_GROUP, games_topic: str,
              dlq_topic: str, chunks_topic: str, store_dir: str | Path, feature_version: str,
              history_length: int, max_rows: int, max_age_s: float | None,
              partitions: int, from_timestamp: datetime | None = None,
              metrics: Metrics = NULL_METRICS) -> ProcessorApp:
    """A faust app whose one agent feeds ``games_topic`` to a `StreamProcessor` writing
    chunks into ``store_dir``. ``partitions`` is the games topic's partition count. faust
    (aiokafka) and the kafka-python side outputs connect with the same ``kafka`` settings."""
    store = ChunkStore(store_dir)
    start_at = (TimestampStart(kafka, games_topic, from_timestamp)
                if from_timestamp is not None else None)
    outputs = SideOutputs(kafka, dlq_topic=dlq_topic, chunks_topic=chunks_topic,
                          metrics=metrics)
    processor = StreamProcessor(store, topic=games_topic, feature_version=feature_version,
                                history_length=history_length, max_rows=max_rows,
                                max_age_s=max_age_s, dead_letter=outputs.dead_letter,
                                announce=outputs.announce, start_at=start_at,
                                metrics=metrics)
    datadir = faust_datadir(group)
    app = ProcessorApp(
        group, broker=kafka.faust_broker_urls(),
        broker_credentials=kafka.faust_broker_credentials(), store="memory://",
        datadir=str(datadir), topic_partitions=partitions, value_serializer="raw",
        key_serializer="raw", processing_guarantee="at_least_once",
        stream_wait_empty=False, broker_commit_every=COMMIT_EVERY,
        broker_commit_interval=COMMIT_INTERVAL_S, broker_session_timeout=SESSION_TIMEOUT_S,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=MAX_MESSAGE_BYTES, web_enabled=False,
        topic_disable_leader=True, broker_client_id="playstream-stream")
    app.processor = processor
    app.consumed_lag = {}
    commits = SealedCommits(app, processor, games_topic)
    source = app.topic(games_topic, key_serializer="raw", value_serializer="raw", acks=False)

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
        for tp in assigned:
            if tp.topic == games_topic:
                processor.assign(tp.partition)

    @app.on_rebalance_complete.connect
    async def _position(sender: Any, **_: Any) -> None:
        # faust awaits this signal right before it resumes the partitions and seeks them to
        # the committed offsets, so the commit below has landed when it reads them.
        wanted = {tp: processor.assign(tp.partition) for tp in app.consumer.assignment()
                  if tp.topic == games_topic}
        for tp, offset in wanted.items():
            await app.consumer.seek(tp, offset)
        await commits.commit({tp.partition: offset for tp, offset in wanted.items()})

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == games_topic:
                processor.revoke(tp.partition)
                commits.forget(tp.partition)
                app.consumed_lag.pop(tp.partition, None)

    @app.agent(source, name="playstream-games", concurrency=1,
               supervisor_strategy=CrashingSupervisor)
    async def _games(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            sealed = processor.counters.chunks
            processor.process(message.partition, message.offset, message.value,
                              key=message.key, timestamp_s=message.timestamp)
            if processor.counters.chunks != sealed:
                await commits.commit()

    @app.timer(interval=tick_interval(max_age_s), name="playstream-tick")
    async def _tick() -> None:
        processor.tick()
        await commits.commit()
        _measure_lag(app, games_topic, metrics)

    @app.on_before_shutdown.connect
    async def _shutdown(sender: Any, **_: Any) -> None:
        processor.close()
        outputs.close()
        if start_at is not None:
            start_at.close()

    return app


def _measure_lag(app: ProcessorApp, topic: str, metrics: Metrics) -> None:
    """Lag gauges from the end offsets the fetcher last saw (no extra request): the
    records not yet sealed, and, for readiness, the records not yet processed."""
    processor = app.processor
    for partition, through in processor.sealed_through().items():
        end = app.consumer.highwater(TP(topic, partition))
        expected = processor.expected(partition)
        if end is None or expected is None:
            continue
        metrics.partition_lag(topic, partition, max(0, end - through))
        app.consumed_lag[partition] = max(0, end - expected)
    metrics.open_rows(processor.open_rows)


def run_worker(app: ProcessorApp, *, loglevel: str = "warning") -> int:
    """Run the app in this process until SIGTERM/SIGINT; returns the exit code (0 after a
    clean stop, 1 after a crash). faust's own logs go to stderr at ``loglevel``."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # it writes cursor escapes to stdout even when that is no terminal
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        return int(done.code or 0)
