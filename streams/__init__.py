"""Stream processors: the games topic to exactly-once chunks (Kafka Connect HDFS-sink style).

`StreamProcessor` is the driver-agnostic core; `playstream.streams.faust_app` drives it with
faust-streaming (imported on demand: faust is slow to import and optional).
"""
from playstream.streams.announce import (Announcement, announcement_for, decode_announcement,
                                         encode_announcement)
from playstream.streams.deadletter import (DeadLetter, DeadLetterMessage, decode_dead_letter,
                                           encode_dead_letter)
from playstream.streams.processor import ProcessorCounters, StreamProcessor


__all__ = ["Announcement", "DeadLetter", "DeadLetterMessage",
           "ProcessorCounters", "StreamProcessor", "announcement_for", "decode_announcement",
           "decode_dead_letter", "encode_announcement", "encode_dead_letter"]
