"""The Kafka producer side: self-play games onto the games topic, through a local spool.

`GamePublisher` lives in `playstream.producers.publisher` and needs the optional ``kafka``
extra (kafka-python); the spool does not. Topic names are in `playstream.topics`.
"""
from playstream.producers.spool import Spool, SpoolCorruptError, SpoolFullError

__all__ = ["Spool", "SpoolCorruptError", "SpoolFullError"]
