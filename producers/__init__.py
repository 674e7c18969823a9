"""The Kafka producer side: self-play games onto the games topic, through a local spool.

`GamePublisher` lives in `playstream.producers.publisher` and needs the optional ``kafka``
extra (kafka-python); the spool and the topic names imported here do not.
"""
from playstream.producers.spool import Spool, SpoolCorruptError, SpoolFullError
from playstream.producers.topics import (DEFAULT_CHUNKS_TOPIC, DEFAULT_DLQ_TOPIC,
                                         DEFAULT_GAMES_PARTITIONS, DEFAULT_GAMES_TOPIC,
                                         MAX_MESSAGE_BYTES, ensure_topics, topic_configs)

__all__ = ["DEFAULT_CHUNKS_TOPIC", "DEFAULT_DLQ_TOPIC", "DEFAULT_GAMES_PARTITIONS",
           "DEFAULT_GAMES_TOPIC", "MAX_MESSAGE_BYTES", "Spool", "SpoolCorruptError",
           "SpoolFullError", "ensure_topics", "topic_configs"]
