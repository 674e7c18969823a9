"""Counting the reasons on a dead-letter topic, for the dataset report.

Reads the topic from its start (or its newest ``max_messages`` records per partition) up to
the end offsets seen when it starts, with manual assignment and no consumer group, so it
commits nothing and disturbs no processor. Only the ``playstream-reason`` header is read; a
message without one (written by another tool) is counted under `NO_REASON`.
"""
from __future__ import annotations

import time
from collections import Counter

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from playstream.clients.kafka import KafkaConnection, refuse_bad_credentials
from playstream.errors import PlaystreamError
from playstream.producers.kafkaclient import StopIOFirstClient
from playstream.records import MAX_RECORD_BYTES
from playstream.streams.deadletter import MAX_HEADER_BYTES, REASON

NO_REASON = "(no playstream-reason header)"
POLL_MS = 500
MAX_REASON_CHARS = 200


def count_reasons(kafka: KafkaConnection, topic: str, *, max_messages: int = 100_000,
                  timeout_s: float = 30.0) -> Counter[str]:
    """Reasons → messages among the newest ``max_messages`` of each partition of ``topic``.
    PlaystreamError when the topic does not exist or is not read to its end in time."""
    refuse_bad_credentials(kafka)
    consumer = KafkaConsumer(**kafka.kafka_python_kwargs(), group_id=None,
                             enable_auto_commit=False, client_id="playstream-report",
                             allow_auto_create_topics=False,
                             max_partition_fetch_bytes=MAX_RECORD_BYTES + MAX_HEADER_BYTES * 8,
                             kafka_client=StopIOFirstClient)
    reasons: Counter[str] = Counter()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise PlaystreamError("topic does not exist or has no partitions", topic=topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        begins = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - max_messages))
        remaining = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise PlaystreamError(f"not read to its end within {timeout_s:.0f} s",
                                      topic=topic)
            for tp, messages in consumer.poll(timeout_ms=POLL_MS).items():
                for msg in messages:
                    if msg.offset < ends[tp]:
                        reasons[_reason(msg.headers)] += 1
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    except KafkaError as err:
        raise PlaystreamError(f"cannot read the dead-letter topic: {err}", topic=topic) from None
    finally:
        consumer.close()
    return reasons


def _reason(headers: list[tuple[str, bytes | None]] | None) -> str:
    for name, raw in headers or ():
        if name == REASON and raw is not None:
            text = raw[:MAX_HEADER_BYTES].decode("utf-8", errors="replace").strip()
            return text[:MAX_REASON_CHARS] or NO_REASON
    return NO_REASON
