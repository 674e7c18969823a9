"""Kafka partitions to sealed chunks, exactly once per offset; no Kafka client in here.

The design is Kafka Connect's HDFS sink. The chunk names in the store are the only record of
progress: on assignment a partition's `ChunkWriter` resumes from its sealed names and the
driver seeks the consumer there, whatever the group committed (faust's commits cannot be
trusted, faust #606, and are only an optimisation). Records below the resume point are
duplicates (faust redelivers at start-up) and are dropped. On revocation the open chunk is
discarded; the next owner reads those records again and seals them once. A crash is a
revocation that nobody announced: the successor resumes from the names (on a local store
after the kernel dropped the dead owner's stream lock), completing a half-sealed group first.
On an object store there is no lock: a paused owner that wakes up after a rebalance lists
before it seals and stops on a range that overlaps the new owner's chunks (the error crashes
the worker, whose restart resumes from the names); what slips through that check is left out
by the compaction cover (docs/ARCHITECTURE.md, "Who may write a stream").

The driver (`faust_app`, or any consumer loop) calls `assign` / `revoke` from its rebalance
callbacks and must position its consumer at the offset `assign` returns before records of
that partition flow; it calls `process` for every record, and `tick` now and then so quiet
partitions seal. A record beyond the expected offset is taken (retention may have deleted
the ones before it) but counted and logged as missing offsets: a driver whose consumer
skipped ahead would otherwise lose records silently.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from playstream.chunks import (ChunkOrigin, ChunkStore, ChunkWriter, SealedChunk,
                               topic_stream_id)
from playstream.dataset.config import encoder_scope
from playstream.errors import RecordError
from playstream.incremental import IncrementalExporter
from playstream.metrics import NULL_METRICS, Metrics
from playstream.records import decode_msgpack
from playstream.streams.deadletter import DeadLetter

DEFAULT_LOCK_TIMEOUT_S = 5.0

log = logging.getLogger("playstream.streams")


@dataclass
class ProcessorCounters:
    """What this processor did since it started. ``processed`` counts records at their
    first delivery to this owner (valid or not); ``redelivered`` the duplicates below the
    resume point; ``unowned`` records of partitions it does not hold (in flight across a
    rebalance); ``missing_offsets`` offsets that were never delivered (see `process`);
    ``rows`` and ``chunks`` what it sealed."""

    processed: int = 0
    invalid: int = 0
    redelivered: int = 0
    unowned: int = 0
    missing_offsets: int = 0
    rows: int = 0
    chunks: int = 0


@dataclass
class _Owned:
    """An assigned partition: its writer, the next offset it has not seen, where it started
    (a replay start skips what lies before it), and the Kafka timestamps (offset, epoch
    seconds) of its records not yet sealed, for the latency."""

    writer: ChunkWriter
    exporter: IncrementalExporter
    expected: int
    start: int
    unsealed_times: list[tuple[int, float]] = field(default_factory=list)


class StreamProcessor:
    """Turns the records of the assigned partitions of ``topic`` into sealed chunks.

    ``dead_letter`` is called for every invalid record before any chunk covering its offset
    can seal (also for a record that validates but that the encoder refuses), so a dead
    letter is durable when the callback returns synchronously. Dead letters are at least
    once: an unsealed invalid record is read and dead-lettered again by the next owner.
    ``announce`` is called after each seal. ``start_at(partition)`` gives a replay start
    (an offset for a ``--from`` time); records before it are never read. ``metrics``
    receives the counts and timings as they happen (`playstream.metrics`).
    """

    def __init__(self, store: ChunkStore, *, topic: str, feature_version: str,
                 history_length: int, max_rows: int, max_age_s: float | None,
                 dead_letter: Callable[[DeadLetter], None],
                 announce: Callable[[SealedChunk], None],
                 start_at: Callable[[int], int | None] | None = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic,
                 metrics: Metrics = NULL_METRICS) -> None:
        topic_stream_id(topic, 0)  # ChunkError now for a topic name that cannot be a stream
        self.store = store
        self.topic = topic
        self.feature_version = feature_version
        self.history_length = history_length
        self.scope = encoder_scope(feature_version, history_length)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.lock_timeout = lock_timeout
        self.counters = ProcessorCounters()
        self._dead_letter = dead_letter
        self._announce = announce
        self._start_at = start_at
        self._clock = clock
        self.metrics = metrics
        self._owned: dict[int, _Owned] = {}

    @property
    def assigned(self) -> list[int]:
        return sorted(self._owned)

    def expected(self, partition: int) -> int | None:
        """The next offset ``partition`` needs, None when it is not assigned here."""
        owned = self._owned.get(partition)
        return owned.expected if owned is not None else None

    def sealed_through(self) -> dict[int, int]:
        """Per assigned partition, one past its newest sealed offset (or the replay start, if
        later: what lies before it is skipped on purpose): what the group commits so that
        Kafka's own lag tools see the records that are not yet in a chunk."""
        return {p: max(owned.writer.next_position, owned.start)
                for p, owned in sorted(self._owned.items())}

    @property
    def open_rows(self) -> int:
        """Rows held in the open chunks of every assigned partition."""
        return sum(owned.writer.open_rows for owned in self._owned.values())

    def assign(self, partition: int) -> int:
        """Take ``partition`` and return the offset the consumer must seek to. Waits up to
        ``lock_timeout`` for the stream lock (the revoked owner may still be letting go).
        Idempotent: a partition already held keeps its open chunk."""
        owned = self._owned.get(partition)
        if owned is not None:
            return owned.expected
        stream = topic_stream_id(self.topic, partition)
        replay = self._start_at(partition) if self._start_at is not None else None
        writer = ChunkWriter(self.store, stream, self.scope, max_rows=self.max_rows,
                             max_age_s=self.max_age_s, lock_timeout=self.lock_timeout,
                             origin=ChunkOrigin.kafka(self.topic, partition),
                             clock=self._clock)
        start = writer.next_position
        if replay is not None and replay > start:
            start = replay
        exporter = IncrementalExporter(writer, feature_version=self.feature_version,
                                       history_length=self.history_length)
        self._owned[partition] = _Owned(writer, exporter, start, start)
        log.info("partition assigned", extra={"stream": stream, "offset": start,
                                              "resume": writer.next_position})
        return start

    def revoke(self, partition: int) -> None:
        """Let ``partition`` go: drop its open chunk and release the lock. Never seals, so it
        is fast, and the next owner re-reads exactly the unsealed records."""
        owned = self._owned.pop(partition, None)
        if owned is not None:
            owned.writer.close()
            log.info("partition revoked", extra={"stream": owned.writer.stream,
                                                 "offset": owned.expected})

    def process(self, partition: int, offset: int, payload: bytes | None,
                key: bytes | None = None, timestamp_s: float | None = None) -> None:
        """Handle the record at (``partition``, ``offset``): rows into the open chunk, or a
        dead letter (also for a tombstone, ``payload`` None). ``timestamp_s`` is the
        record's Kafka timestamp, for the publish-to-sealed latency. Raises only for store
        or dead-letter failures, after dropping the partition (see `_drop`)."""
        owned = self._owned.get(partition)
        if owned is None:
            self.counters.unowned += 1
            return
        if offset < owned.expected:
            self.counters.redelivered += 1
            return
        if offset > owned.expected:
            # Deleted by retention, a transaction marker, or a consumer positioned wrongly:
            # the chunk's range will include offsets whose records were never seen here.
            self.counters.missing_offsets += offset - owned.expected
            log.warning("offsets skipped: never delivered", extra={
                "topic": self.topic, "partition": partition, "first": owned.expected,
                "last": offset - 1})
        self.metrics.record_consumed(self.topic, partition)
        if timestamp_s is not None:
            owned.unsealed_times.append((offset, timestamp_s))
        started = time.monotonic()
        try:
            sealed = self._add(owned, partition, offset, payload, key)
        except Exception:
            self._drop(partition)
            raise
        owned.expected = offset + 1
        self.counters.processed += 1
        self._sealed(owned, sealed, started)

    def tick(self) -> None:
        """Seal the open chunks that reached ``max_age_s``, even on quiet partitions."""
        self._seal_each(ChunkWriter.tick)

    def finalize(self) -> None:
        """Seal every open chunk now: the end of a bounded run (a replay) that has read all
        it wanted. The live processor never calls it; it seals on size and age only."""
        self._seal_each(ChunkWriter.finalize)

    def close(self) -> None:
        """Revoke everything (open chunks are discarded, locks released)."""
        for partition in list(self._owned):
            self.revoke(partition)

    def _seal_each(self, seal: Callable[[ChunkWriter], list[SealedChunk]]) -> None:
        for partition, owned in list(self._owned.items()):
            started = time.monotonic()
            try:
                sealed = seal(owned.writer)
            except Exception:
                self._drop(partition)
                raise
            self._sealed(owned, sealed, started)

    def _add(self, owned: _Owned, partition: int, offset: int, payload: bytes | None,
             key: bytes | None) -> list[SealedChunk]:
        ctx: dict[str, Any] = {"topic": self.topic, "partition": partition, "offset": offset}
        data: dict[str, Any] | None = None
        error: RecordError | None = None
        if payload is None:
            error = RecordError("the message has no value (a tombstone)", field="record", **ctx)
        else:
            try:
                data = decode_msgpack(payload, **ctx)
            except RecordError as err:
                error = err

        def dead_letter(err: RecordError) -> None:
            self._send_dead_letter(partition, offset, key, payload or b"", err)

        return owned.exporter.add_game(offset, data, error, on_invalid=dead_letter,
                                       **ctx).sealed

    def _drop(self, partition: int) -> None:
        """After a failure (store, dead-letter topic) the open chunk is in doubt: let the
        partition go, so that no later record can seal a range over the failed one; the
        driver must crash or rebalance, and the next owner re-reads from the names."""
        log.error("partition dropped after a failure", extra={"topic": self.topic,
                                                              "partition": partition})
        self.revoke(partition)

    def _send_dead_letter(self, partition: int, offset: int, key: bytes | None,
                          payload: bytes, error: RecordError) -> None:
        self.counters.invalid += 1
        self.metrics.record_invalid(self.topic, error.field or "record")
        self._dead_letter(DeadLetter(topic=self.topic, partition=partition, offset=offset,
                                     key=key, reason=error.message, field=error.field,
                                     game_id=error.game_id, payload=payload))

    def _sealed(self, owned: _Owned, chunks: list[SealedChunk], started: float) -> None:
        if chunks:
            self.metrics.seal_seconds(time.monotonic() - started)
        times = owned.unsealed_times
        through = owned.writer.next_position
        if times and times[0][0] < through:  # a seal (maybe of invalid records only) passed
            now = time.time()
            done = next((i for i, (offset, _) in enumerate(times) if offset >= through),
                        len(times))
            for _, published in times[:done]:
                self.metrics.publish_to_sealed_seconds(max(0.0, now - published))
            del times[:done]
        for chunk in chunks:
            self.counters.chunks += 1
            self.counters.rows += chunk.rows
            self.metrics.chunk_sealed(chunk.config_key, chunk.rows)
            log.info("chunk sealed", extra={"chunk": chunk.object_name, "rows": chunk.rows})
            self._announce(chunk)
