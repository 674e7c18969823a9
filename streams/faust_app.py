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
* faust's own commits are rare (``broker_commit_every`` huge, ``broker_commit_interval``
  moderate) and only feed lag monitoring: they hold acknowledged offsets, which may be ahead
  of the sealed ones (and faust #606 can skip unacknowledged ones), and nothing reads them
  back, since the handler above overwrites them before every recovery seek.
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
from playstream.errors import PlaystreamError, error_text
from playstream.topics import MAX_MESSAGE_BYTES
from playstream.topics import PROCESSOR_GROUP
from playstream.streams.announce import announcement_for, encode_announcement
from playstream.streams.deadletter import DeadLetter, encode_dead_letter
from playstream.streams.processor import StreamProcessor
from playstream.streams.starts import TimestampStart

# Offsets are committed only as a hint for faust's recovery seek (see the module docstring).
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

    def __init__(self, bootstrap: str, *, dlq_topic: str, chunks_topic: str) -> None:
        self.dlq_topic = dlq_topic
        self.chunks_topic = chunks_topic
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","), client_id="playstream-stream",
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


class ProcessorApp(faust.App):
    """A faust app that drives one `StreamProcessor` (kept here for the worker's summary)."""

    processor: StreamProcessor


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


def build_app(bootstrap: str, *, group: str = PROCESSOR_GROUP, games_topic: str,
              dlq_topic: str, chunks_topic: str, store_dir: str | Path, feature_version: str,
              history_length: int, max_rows: int, max_age_s: float | None,
              partitions: int, from_timestamp: datetime | None = None) -> ProcessorApp:
    """A faust app whose one agent feeds ``games_topic`` to a `StreamProcessor` writing
    chunks into ``store_dir``. ``partitions`` is the games topic's partition count."""
    store = ChunkStore(store_dir)
    start_at = (TimestampStart(bootstrap, games_topic, from_timestamp)
                if from_timestamp is not None else None)
    outputs = SideOutputs(bootstrap, dlq_topic=dlq_topic, chunks_topic=chunks_topic)
    processor = StreamProcessor(store, topic=games_topic, feature_version=feature_version,
                                history_length=history_length, max_rows=max_rows,
                                max_age_s=max_age_s, dead_letter=outputs.dead_letter,
                                announce=outputs.announce, start_at=start_at)
    datadir = faust_datadir(group)
    app = ProcessorApp(
        group, broker=[f"kafka://{b}" for b in bootstrap.split(",")], store="memory://",
        datadir=str(datadir), topic_partitions=partitions, value_serializer="raw",
        key_serializer="raw", processing_guarantee="at_least_once",
        stream_wait_empty=False, broker_commit_every=COMMIT_EVERY,
        broker_commit_interval=COMMIT_INTERVAL_S, broker_session_timeout=SESSION_TIMEOUT_S,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=MAX_MESSAGE_BYTES, web_enabled=False,
        topic_disable_leader=True)
    app.processor = processor
    source = app.topic(games_topic, key_serializer="raw", value_serializer="raw")

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
        if wanted:
            await app.consumer._commit(wanted)

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == games_topic:
                processor.revoke(tp.partition)

    @app.agent(source, name="playstream-games", concurrency=1,
               supervisor_strategy=CrashingSupervisor)
    async def _games(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            processor.process(message.partition, message.offset, message.value,
                              key=message.key)

    @app.timer(interval=tick_interval(max_age_s), name="playstream-tick")
    async def _tick() -> None:
        processor.tick()

    @app.on_before_shutdown.connect
    async def _shutdown(sender: Any, **_: Any) -> None:
        processor.close()
        outputs.close()
        if start_at is not None:
            start_at.close()

    return app


def run_worker(app: ProcessorApp, *, loglevel: str = "warning") -> int:
    """Run the app in this process until SIGTERM/SIGINT; returns the exit code (0 after a
    clean stop, 1 after a crash). faust's own logs go to stderr at ``loglevel``."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # it writes cursor escapes to stdout even when that is no terminal
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        return int(done.code or 0)
