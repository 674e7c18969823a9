"""Where a replay starts reading: the first offset at or after a time (kafka-python only, so
that both the faust driver and the bounded replay use it)."""
from __future__ import annotations

from datetime import datetime

from kafka import KafkaConsumer, TopicPartition

from playstream.clients.kafka import KafkaConnection, kafka_errors
from playstream.errors import PlaystreamError
from playstream.producers.kafkaclient import StopIOFirstClient


class TimestampStart:
    """``start_at`` for a replay ``--from`` a time: the first offset whose record timestamp is
    at or after it, or the end of the partition when there is none yet."""

    def __init__(self, kafka: KafkaConnection, topic: str, when: datetime) -> None:
        if when.tzinfo is None:
            raise PlaystreamError("the replay start time needs a time zone", field="from")
        self.topic = topic
        self.timestamp_ms = int(when.timestamp() * 1000)
        with kafka_errors(kafka):
            self._consumer = KafkaConsumer(**kafka.kafka_python_kwargs(), group_id=None,
                                           enable_auto_commit=False,
                                           client_id="playstream-stream-replay",
                                           kafka_client=StopIOFirstClient)

    def __call__(self, partition: int) -> int:
        tp = TopicPartition(self.topic, partition)
        found = self._consumer.offsets_for_times({tp: self.timestamp_ms})[tp]
        if found is not None:
            return int(found.offset)
        return int(self._consumer.end_offsets([tp])[tp])

    def close(self) -> None:
        self._consumer.close()
