"""Publish finished games to Kafka without ever losing one.

`GamePublisher.publish` validates a record, appends it to the local spool (fsync'd) and
returns: the self-play loop never waits on the broker. A forwarder thread sends the spool's
pending records in order, keyed by game_id, through an idempotent ``acks=all`` producer, and
acknowledges them in the spool as the broker confirms them. When the broker is down the
records simply wait in the spool; a failed delivery rewinds the forwarder to the first
unacknowledged record once nothing is in flight, so order is kept and nothing is skipped.

Delivery is at least once. Within one producer session the idempotent producer removes its
own retries, so a broker restart shorter than ``delivery_timeout_ms`` yields each game
exactly once. A game is sent again, by a later session or after a delivery failure, only if
its acknowledgement never reached the spool; the copy has the same key and the same bytes,
so consumers deduplicate by game_id.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import TracebackType

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from playstream.errors import PlaystreamError, RecordError, error_text
from playstream.producers.spool import Spool
from playstream.producers.topics import ensure_topics
from playstream.topics import DEFAULT_GAMES_PARTITIONS, DEFAULT_GAMES_TOPIC, MAX_MESSAGE_BYTES
from playstream.records import MAX_RECORD_BYTES, GameRecord, decode_msgpack, validate_record

DEFAULT_SPOOL_BYTES = 1024 * 1024 * 1024
MAX_IN_FLIGHT = 1000
CONNECT_TIMEOUT_MS = 5000
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 5.0
IDLE_WAKE_S = 1.0
FORCE_CLOSE_WAIT_S = 2.0

log = logging.getLogger("playstream.producers")


@dataclass(frozen=True)
class PublisherMetrics:
    """``published``: games the broker acknowledged in this session; ``spooled_pending``:
    games in the spool awaiting acknowledgement; ``failures``: failed connection or delivery
    attempts (each retried); ``oldest_pending_age_s``: how long the oldest pending game has
    waited (for games left by an earlier run, since this publisher started: a lower bound),
    None when nothing is pending."""

    published: int
    spooled_pending: int
    failures: int
    last_error: str | None
    oldest_pending_age_s: float | None = None


class GamePublisher:
    """One self-play worker's path to the games topic. Use one per spool directory."""

    def __init__(self, bootstrap: str, topic: str = DEFAULT_GAMES_TOPIC, *,
                 spool_dir: str | Path, client_id: str | None = None, linger_ms: int = 20,
                 partitions: int = DEFAULT_GAMES_PARTITIONS,
                 spool_max_bytes: int = DEFAULT_SPOOL_BYTES, max_block_ms: int = 2000,
                 request_timeout_ms: int = 15_000, delivery_timeout_ms: int = 60_000,
                 retries: int = 20, max_in_flight: int = MAX_IN_FLIGHT,
                 connect_timeout_ms: int = CONNECT_TIMEOUT_MS) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.max_in_flight = max_in_flight
        self.connect_timeout_ms = connect_timeout_ms
        self._producer_config = {
            "bootstrap_servers": bootstrap, "client_id": client_id, "acks": "all",
            "enable_idempotence": True, "compression_type": "gzip", "linger_ms": linger_ms,
            "retries": retries, "request_timeout_ms": request_timeout_ms,
            "delivery_timeout_ms": delivery_timeout_ms, "max_block_ms": max_block_ms,
            "max_request_size": MAX_MESSAGE_BYTES, "allow_auto_create_topics": False,
            "bootstrap_timeout_ms": connect_timeout_ms, "reconnect_backoff_max_ms": 1000,
        }
        self._spool = Spool(spool_dir, max_bytes=spool_max_bytes)
        self._log_extra = {"topic": topic, "spool": str(self._spool.directory)}
        # shared with the publishing thread and the producer's I/O thread, under _cond
        self._cond = threading.Condition()
        self._delivered: list[int] = []
        self._failed: list[tuple[int, BaseException]] = []
        self._wakeup = False
        self._stopping = False
        self._close_deadline = 0.0
        self._published = 0
        self._failures = 0
        self._last_error: str | None = None
        self._warned: str | None = None  # the failure last warned about, until a delivery
        self._crash: BaseException | None = None
        self._closed = False
        # (spool sequence, wall time it was spooled) of the games that may still be pending
        self._spooled_at: deque[tuple[int, float]] = deque()
        if self._spool.pending_count:
            self._spooled_at.append((self._spool.position, time.time()))
        # owned by the forwarder thread
        self._producer: KafkaProducer | None = None
        self._in_flight: set[int] = set()
        self._cursor = self._spool.position
        self._rewind = False
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN_S
        if self._spool.pending_count:
            log.info("forwarding games left in the spool by an earlier run",
                     extra={**self._log_extra, "pending": self._spool.pending_count})
        self._thread = threading.Thread(target=self._forward, daemon=True,
                                        name=f"playstream-publisher[{topic}]")
        self._thread.start()

    # ------------------------------------------------------------------ caller side
    def publish(self, record: GameRecord) -> int:
        """Validate (both layers), spool durably and return the spool sequence number.

        Raises RecordError naming the field for an invalid record (nothing is spooled or
        sent), SpoolFullError when the broker has been away for too long.
        """
        if self._closed:
            raise PlaystreamError("publisher is closed", topic=self.topic)
        validate_record(record.model_dump(mode="json"))
        payload = record.to_msgpack()
        if len(payload) > MAX_RECORD_BYTES:
            raise RecordError(f"record is {len(payload)} bytes, limit {MAX_RECORD_BYTES}",
                              field="record", game_id=record.game_id)
        seq = self._spool.append(payload)
        with self._cond:
            self._spooled_at.append((seq, time.time()))
            self._forget_delivered()
            self._wakeup = True
            self._cond.notify_all()
            crash = self._crash
        if crash is not None:  # the game is spooled; the next start forwards it
            raise PlaystreamError(f"publisher forwarder stopped: {type(crash).__name__}: "
                                  f"{crash}", **self._log_extra)
        return seq

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every game published so far is acknowledged by the broker."""
        target = self._spool.next_seq
        with self._cond:
            return self._cond.wait_for(
                lambda: self._spool.position >= target or self._crash is not None,
                timeout) and self._crash is None

    def close(self, timeout: float = 30.0) -> int:
        """Deliver what can be delivered within ``timeout`` seconds, then stop. Returns how
        many games stay in the spool; the next publisher on this spool sends them first.
        May take up to the connection timeout longer while the broker is unreachable."""
        if self._closed:
            return self._spool.pending_count
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._close_deadline = deadline
            self._cond.notify_all()
        self._thread.join()
        self._spool.close()
        self._closed = True
        left = self._spool.pending_count
        log.info("publisher closed", extra={**self._log_extra, "left_in_spool": left,
                                            "published": self._published})
        return left

    @property
    def spool_dir(self) -> Path:
        return self._spool.directory

    def metrics(self) -> PublisherMetrics:
        with self._cond:
            pending = self._spool.pending_count
            self._forget_delivered()
            spooled = self._spooled_at
            age = time.time() - spooled[0][1] if pending and spooled else None
            return PublisherMetrics(self._published, pending, self._failures,
                                    self._last_error, age)

    def _forget_delivered(self) -> None:
        """Drop the spool times of games below the spool's position (all delivered), so the
        first entry is the oldest pending game's (call under ``_cond``)."""
        spooled, position = self._spooled_at, self._spool.position
        while len(spooled) > 1 and spooled[1][0] <= position:
            spooled.popleft()

    def __enter__(self) -> "GamePublisher":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ producer callbacks
    def _on_delivered(self, seq: int, _metadata: object) -> None:
        with self._cond:
            self._delivered.append(seq)
            self._cond.notify_all()

    def _on_failed(self, seq: int, error: BaseException) -> None:
        with self._cond:
            self._failed.append((seq, error))
            self._cond.notify_all()

    # ------------------------------------------------------------------ forwarder thread
    def _forward(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(
                        lambda: self._delivered or self._failed or self._wakeup
                        or self._stopping, self._idle_wait())
                    self._wakeup = False
                    stopping = self._stopping
                self._settle()
                if stopping:
                    break
                if time.monotonic() >= self._retry_at and (self._producer is not None
                                                           or self._connect()):
                    self._send_pending()
        except BaseException as err:  # reported to the caller by publish() and flush()
            log.exception("publisher forwarder crashed", extra=self._log_extra)
            with self._cond:
                self._crash = err
                self._cond.notify_all()
        finally:
            self._close_producer()

    def _idle_wait(self) -> float:
        until_retry = self._retry_at - time.monotonic()
        return min(IDLE_WAKE_S, until_retry) if until_retry > 0 else IDLE_WAKE_S

    def _connect(self) -> bool:
        try:
            ensure_topics(self.bootstrap, {self.topic: self.partitions},
                          timeout_ms=self.connect_timeout_ms)
            self._producer = KafkaProducer(**self._producer_config)
        except (PlaystreamError, KafkaError) as err:
            self._note_failure(err, "cannot connect to Kafka")
            return False
        log.info("connected to Kafka", extra={**self._log_extra, "bootstrap": self.bootstrap})
        return True

    def _send_pending(self) -> None:
        """Hand the next pending records to the producer, in spool order."""
        assert self._producer is not None
        if self._rewind:
            return
        room = self.max_in_flight - len(self._in_flight)
        with closing(self._spool.pending(start=self._cursor)) as frames:
            for seq, payload in islice(frames, max(room, 0)):
                key = decode_msgpack(payload)["game_id"].encode()
                try:
                    future = self._producer.send(self.topic, value=payload, key=key)
                except KafkaTimeoutError as err:  # no metadata within max_block_ms
                    self._note_failure(err, "broker unavailable", seq=seq)
                    return
                except KafkaError as err:
                    self._note_failure(err, "producer failed; reconnecting", seq=seq)
                    self._close_producer()
                    return
                self._in_flight.add(seq)
                self._cursor = seq + 1
                future.add_callback(self._on_delivered, seq)
                future.add_errback(self._on_failed, seq)

    def _settle(self) -> None:
        """Apply what the producer reported: ack delivered records in the spool, and after a
        failure rewind to the first unacknowledged record once nothing is in flight."""
        with self._cond:
            delivered, self._delivered = self._delivered, []
            failed, self._failed = self._failed, []
        if delivered:
            self._spool.ack(*delivered)
            self._in_flight.difference_update(delivered)
            self._backoff = BACKOFF_MIN_S
            self._warned = None
            with self._cond:
                self._published += len(delivered)
                self._cond.notify_all()
        if failed:
            self._in_flight.difference_update(seq for seq, _ in failed)
            self._note_failure(failed[0][1], "deliveries failed; they stay in the spool and "
                               "are sent again", seq=failed[0][0], count=len(failed))
            self._rewind = True
        if self._rewind and not self._in_flight:
            self._cursor = self._spool.position
            self._rewind = False

    def _note_failure(self, error: BaseException, what: str, *, seq: int | None = None,
                      count: int = 1) -> None:
        retry_in = self._backoff
        self._retry_at = time.monotonic() + retry_in
        self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)
        last_error = error_text(error)
        with self._cond:
            self._failures += count
            self._last_error = last_error
        repeated, self._warned = self._warned == last_error, last_error
        # A broker that stays down fails the same way on every retry: warn once, and keep the
        # retries for --log-level info.
        log.log(logging.INFO if repeated else logging.WARNING, what,
                extra={**self._log_extra, "seq": seq, "count": count, "error": last_error,
                       "retry_in_s": retry_in})

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        timeout = max(0.0, self._close_deadline - time.monotonic())
        try:
            producer.close(timeout=timeout)
        except KafkaTimeoutError:
            # kafka-python 3.0.x: close() flushes first and raises when records are still
            # undelivered, leaving its I/O thread running. Stop that thread the way close()
            # itself does after a timeout; the abandoned records fail and stay spooled.
            producer._sender.force_close()
            producer.close(timeout=max(timeout, FORCE_CLOSE_WAIT_S))
        self._settle()
