"""The continuous finalizer: chunk announcements in, published datasets out.

Announcements only say *which* configurations have news; the chunk store stays the truth.
Every ``every_s`` seconds the configurations with news are republished from the store with
`compact` (all-or-nothing, see publish), and only then are the consumed offsets committed. A
crash in between rereads the announcements and publishes again, which yields the same rows.

Announcements come from the bus, so none is trusted: its store-relative name must be exactly
``<config key>/<chunk name>`` of the announced configuration and range, the object must exist
in the finalizer's own store (a local folder or ``s3://``), and its sha256 must match. Anything
else is logged and ignored. Because announcements are sent
after the seal and can be lost, a start also catches up from the store: every configuration
whose sealed chunks are not all in its current manifest is published. The same catch-up
covers a configuration whose publish failed (it stays pending and is retried every cycle):
its offsets are committed with the others, since after a restart the store, not the
announcement, says that it is behind.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from playstream.chunks import ChunkName, ChunkStore
from playstream.clients.kafka import KafkaConnection, kafka_errors
from playstream.compaction.compact import CompactionResult, CompactOptions, compact
from playstream.compaction.publish import output_child, read_manifest
from playstream.compaction.retention import apply_retention
from playstream.errors import ChunkError, DatasetError, PlaystreamError, error_text
from playstream.producers.kafkaclient import StopIOFirstClient
from playstream.metrics import NULL_METRICS, Metrics
from playstream.topics import FINALIZER_GROUP
from playstream.streams.announce import MAX_ANNOUNCEMENT_BYTES, Announcement, decode_announcement


# A poll between two publishes lasts at most this long, so a stop is noticed within it.
POLL_S = 1.0
MAX_POLL_RECORDS = 500
# How long run_once waits to join the group and read up to the end of the topic.
DRAIN_TIMEOUT_S = 30.0
# A publish blocks polling; the group keeps the finalizer this long before reassigning.
MAX_PUBLISH_S = 3600

log = logging.getLogger(__name__)


@dataclass
class CycleReport:
    """What one publish cycle did: announcements taken and ignored since the previous
    cycle, the datasets published, the configurations whose publish or retention failed
    (with the error), the chunks retention deleted, and whether the offsets were committed."""

    accepted: int = 0
    ignored: int = 0
    published: dict[str, CompactionResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    deleted: list[Path | str] = field(default_factory=list)
    committed: bool = False


class FinalizerService:
    """One finalizer: a kafka-python consumer of the chunks topic (manual commits) and the
    publisher of ``output_dir/<config key>`` for every configuration of ``store_dir``.

    ``retention_s``: after a publish, delete the configuration's chunks that the new
    manifest lists and that are older than this (see `apply_retention`); later datasets no
    longer contain their rows. None keeps every chunk.
    """

    def __init__(self, kafka: KafkaConnection, *, chunks_topic: str, store_dir: str | Path,
                 output_dir: str | Path, options: CompactOptions, every_s: float,
                 group: str = FINALIZER_GROUP, retention_s: float | None = None,
                 metrics: Metrics = NULL_METRICS) -> None:
        if not every_s > 0:
            raise PlaystreamError(f"every_s must be positive, got {every_s}", field="every_s")
        if retention_s is not None and retention_s < 0:
            raise PlaystreamError(f"retention_s must not be negative, got {retention_s}",
                                  field="retention_s")
        self.store = ChunkStore(store_dir)
        self.output_dir = output_dir
        self.options = options
        self.every_s = every_s
        self.retention_s = retention_s
        self.chunks_topic = chunks_topic
        self.metrics = metrics
        self._pending: set[str] = set()
        self._report = CycleReport()
        self._uncommitted = 0
        self._caught_up = False
        try:
            with kafka_errors(kafka):
                self._consumer = KafkaConsumer(
                    chunks_topic, **kafka.kafka_python_kwargs(), group_id=group,
                    client_id="playstream-finalizer", enable_auto_commit=False,
                    auto_offset_reset="earliest", allow_auto_create_topics=False,
                    max_poll_records=MAX_POLL_RECORDS,
                    max_poll_interval_ms=MAX_PUBLISH_S * 1000,
                    max_partition_fetch_bytes=MAX_ANNOUNCEMENT_BYTES * 16,
                    kafka_client=StopIOFirstClient)
        except KafkaError as err:
            raise PlaystreamError(f"cannot reach Kafka: {error_text(err)}",
                                  bootstrap=kafka.bootstrap, topic=chunks_topic) from None

    # -- lifecycle ------------------------------------------------------------------------
    def run(self, stop_event: threading.Event) -> None:
        """Poll and publish every ``every_s`` seconds until ``stop_event`` is set. The first
        cycle runs at once, so what the store holds is published right after a start."""
        self._catch_up()
        next_cycle = time.monotonic()
        while not stop_event.is_set():
            if time.monotonic() >= next_cycle:
                self._cycle()
                next_cycle = time.monotonic() + self.every_s
                continue
            self._poll(min(POLL_S, max(0.0, next_cycle - time.monotonic())))

    def run_once(self, *, timeout_s: float = DRAIN_TIMEOUT_S) -> CycleReport:
        """Catch up with the store (on the first call), read every announcement already on
        the topic, publish and commit. The topic's end is taken after joining the group; if
        no partition is assigned within ``timeout_s`` only the store is looked at."""
        self._catch_up()
        self._drain(timeout_s)
        return self._cycle()

    @property
    def caught_up(self) -> bool:
        """The store has been compared with the published manifests (readiness)."""
        return self._caught_up

    def close(self) -> None:
        """Leave the group without committing: anything not yet published is read again."""
        self._consumer.close(autocommit=False)

    def __enter__(self) -> FinalizerService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading announcements ------------------------------------------------------------
    def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._consumer.assignment():
            if time.monotonic() >= deadline:
                log.warning("no partition of the chunks topic assigned; publishing from the "
                            "store only", extra={"topic": self.chunks_topic,
                                                 "waited_s": timeout_s})
                return
            self._poll(0.2)
        try:
            ends = self._consumer.end_offsets(list(self._consumer.assignment()))
        except KafkaError as err:
            log.warning("cannot read the end of the chunks topic; publishing what was read",
                        extra={"topic": self.chunks_topic, "error": str(err)})
            return
        while any(self._consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() >= deadline:
                log.warning("did not reach the end of the chunks topic in time; the rest "
                            "is read by the next cycle", extra={"topic": self.chunks_topic})
                return
            self._poll(0.5)

    def _poll(self, timeout_s: float) -> None:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000),
                                      max_records=MAX_POLL_RECORDS)
        for records in batches.values():
            for record in records:
                self._take(record)
                self._uncommitted += 1

    def _take(self, record: ConsumerRecord) -> None:
        where = {"topic": record.topic, "partition": record.partition,
                 "offset": record.offset}
        try:
            announcement = decode_announcement(record.value or b"")
            self._verify(announcement)
        except PlaystreamError as err:
            self._report.ignored += 1
            log.warning("chunk announcement ignored", extra={**where, "reason": err.message,
                                                             **err.context})
            return
        self._report.accepted += 1
        self._pending.add(announcement.config_key)
        log.debug("chunk announced", extra={**where, "config_key": announcement.config_key,
                                            "chunk": announcement.name})

    def _verify(self, ann: Announcement) -> None:
        """ChunkError unless the announcement names, exactly, a sealed chunk of this store under
        its configuration, with the announced range, whose content has the announced sha256.
        The name is checked as a string before the store is asked anything, so no announcement
        can steer a read outside the store (no absolute path, no ``..``, no other folder)."""
        key, sep, filename = ann.name.partition("/")
        name = ChunkName.parse(filename) if sep else None
        if name is None or key != ann.config_key:
            raise ChunkError("the name is not <config key>/<chunk> of the announced "
                             "configuration", chunk=ann.name[:300], config=ann.config_key)
        if (name.stream, name.first, name.last) != (ann.stream, ann.first, ann.last):
            raise ChunkError(f"the chunk name does not match the announced range {ann.stream} "
                             f"{ann.first}..{ann.last}", chunk=ann.name[:300])
        expected = self.store.object_name(self.store.check_key(key), name)
        if expected != ann.name:
            raise ChunkError("the name is not a chunk of this store", chunk=ann.name[:300],
                             store=self.store.location)
        digest = self.store.sha256(key, name)
        if digest != ann.sha256:
            raise ChunkError(f"sha256 {digest} differs from the announced {ann.sha256}",
                             path=self.store.url(key, name))

    # -- publishing -----------------------------------------------------------------------
    def _catch_up(self) -> None:
        """Mark every configuration whose sealed chunks are not all listed by its current
        manifest (no dataset yet, or chunks sealed while the finalizer was down)."""
        if self._caught_up:
            return
        for key in self.store.config_keys():
            names = {name.filename for name in self.store.chunks(key)}
            if not names:
                continue
            try:
                listed = {c.get("file") for c in read_manifest(output_child(self.output_dir, key))["chunks"]}
            except DatasetError:
                listed = set()
            if not names <= listed:
                log.info("configuration behind the store", extra={
                    "config_key": key, "unpublished_chunks": len(names - listed)})
                self._pending.add(key)
        self._caught_up = True

    def _cycle(self) -> CycleReport:
        """Publish every configuration with news, then commit what was read. A failed one
        stays pending (see the module docstring for why its offsets may be committed)."""
        report, self._report = self._report, CycleReport()
        for key in sorted(self._pending):
            try:
                report.published[key] = self._publish(key)
            except PlaystreamError as err:
                report.failed[key] = str(err)
                log.error("publish failed; retried next cycle",
                          extra={"config_key": key, "error": str(err)})
                continue
            self._pending.discard(key)
            try:
                report.deleted += self._retain(key)
            except PlaystreamError as err:  # the dataset is out; retried after the next one
                report.failed[key] = f"retention: {err}"
                log.error("retention failed", extra={"config_key": key, "error": str(err)})
        if self._uncommitted:
            report.committed = self._commit()
        return report

    def _publish(self, key: str) -> CompactionResult:
        result = compact(self.store, key, output_child(self.output_dir, key), self.options)
        self.metrics.compaction_seconds(key, result.seconds)
        self.metrics.dataset_published(key)
        log.info("dataset published", extra={
            "config_key": key, "version": result.version, "rows": result.rows,
            "games": result.games, "chunks": len(result.chunks),
            "chunks_used": len(result.chunks_used), "quarantined": len(result.quarantined),
            "bytes": result.bytes_written, "seconds": round(result.seconds, 3),
            "duplicate_moves": result.duplicate_moves})
        if result.duplicate_moves:
            log.warning("games repeat the move sequence of an older game under another "
                        "game_id", extra={"config_key": key, "games": result.duplicate_moves,
                                          "dropped": self.options.drop_duplicate_moves})
        return result

    def _retain(self, key: str) -> list[Path | str]:
        if self.retention_s is None:
            return []
        try:
            manifest = read_manifest(output_child(self.output_dir, key))
            return apply_retention(self.store, key, [manifest], older_than_s=self.retention_s)
        except OSError as err:
            raise ChunkError(f"retention failed: {err.strerror or err}", path=err.filename,
                             config=key) from None

    def _commit(self) -> bool:
        """Commit the positions of everything polled so far (all of it is published)."""
        try:
            self._consumer.commit()
        except KafkaError as err:
            log.warning("offset commit failed; the announcements are read and published "
                        "again", extra={"error": error_text(err)})
            return False
        log.info("offsets committed", extra={"records": self._uncommitted})
        self._uncommitted = 0
        return True

