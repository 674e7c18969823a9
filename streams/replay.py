"""Replay: rebuild chunks from the retained games topic with another encoder or settings.

A bounded run, unlike the live processor: it reads every partition from its start (the
chunk store's progress, or ``--from``) up to the end offsets seen when it started, seals what
it read, and stops. It uses the same `StreamProcessor` core as the live pipeline, so chunks
are exactly-once and a killed replay resumes where its sealed chunks end. It assigns the
partitions itself (no group rebalancing with the live processors) and commits its progress
under its own group only for monitoring (after every seal, one past the newest sealed offset
of each partition, as the live processor does); the live pipeline is never touched: it writes to
its own chunk store and produces nothing (invalid records are counted, not dead-lettered).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from playstream.chunks import ChunkStore, SealedChunk
from playstream.errors import PlaystreamError
from playstream.producers.kafkaclient import StopIOFirstClient
from playstream.topics import MAX_MESSAGE_BYTES
from playstream.streams.deadletter import DeadLetter
from playstream.streams.processor import StreamProcessor
from playstream.streams.starts import TimestampStart

log = logging.getLogger("playstream.streams")
POLL_MS = 500


@dataclass
class ReplayResult:
    records: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    sealed: list[SealedChunk] = field(default_factory=list)
    config_keys: set[str] = field(default_factory=set)


def replay_topic(bootstrap: str, topic: str, store: ChunkStore, *, feature_version: str,
                 history_length: int, group: str, since: datetime | None = None,
                 max_rows: int = 20_000,
                 progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Read ``topic`` up to its current end into ``store``; returns what was sealed."""
    result = ReplayResult()

    def dead_letter(letter: DeadLetter) -> None:
        result.invalid[f"invalid {letter.field}"] += 1

    def sealed(chunk: SealedChunk) -> None:
        result.sealed.append(chunk)
        result.config_keys.add(chunk.config_key)

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=group,
                             enable_auto_commit=False, client_id="playstream-replay",
                             fetch_max_bytes=MAX_MESSAGE_BYTES * 4,
                             max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                             kafka_client=StopIOFirstClient)
    start_at = TimestampStart(bootstrap, topic, since) if since is not None else None
    processor = StreamProcessor(store, topic=topic, feature_version=feature_version,
                                history_length=history_length, max_rows=max_rows,
                                max_age_s=None, dead_letter=dead_letter, announce=sealed,
                                start_at=start_at)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise PlaystreamError("topic does not exist or has no partitions", topic=topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = consumer.end_offsets(tps)
        starts = {tp: processor.assign(tp.partition) for tp in tps}
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        remaining = {tp for tp in tps if starts[tp] < ends[tp]}
        committed: dict[int, int] = {}
        while remaining:
            for tp, messages in consumer.poll(timeout_ms=POLL_MS).items():
                for msg in messages:
                    if msg.offset >= ends[tp]:
                        break
                    processor.process(tp.partition, msg.offset, msg.value, msg.key)
                    result.records += 1
                    if progress is not None:
                        progress(1)
                _commit_sealed(consumer, topic, processor, committed)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        processor.finalize()
        consumer.commit({tp: OffsetAndMetadata(ends[tp], "", -1) for tp in tps})
    finally:
        processor.close()
        consumer.close()
        if start_at is not None:
            start_at.close()
    return result


def _commit_sealed(consumer: KafkaConsumer, topic: str, processor: StreamProcessor,
                   committed: dict[int, int]) -> None:
    """Commit the sealed-through offsets that moved since the last commit."""
    moved = {p: o for p, o in processor.sealed_through().items() if committed.get(p) != o}
    if moved:
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                         for p, o in moved.items()})
        committed.update(moved)
