"""The names and sizes of the game bus, shared by the Kafka edges and the command line.

Pure constants: the CLI shows them as defaults without importing a Kafka client. A record may
be up to `MAX_RECORD_BYTES`; the topic's ``max.message.bytes`` and the producer's
``max_request_size`` are both derived from it here, so a record that passes validation is
never refused by the broker for its size, and a change of the record limit moves all three.
"""
from __future__ import annotations

from playstream.records import MAX_RECORD_BYTES

DEFAULT_GAMES_TOPIC = "playstream.games"
DEFAULT_DLQ_TOPIC = "playstream.games.dlq"
DEFAULT_CHUNKS_TOPIC = "playstream.chunks"
DEFAULT_GAMES_PARTITIONS = 4
# The side topics (dead letters, chunk announcements) carry little traffic; one partition
# keeps them in order.
SIDE_TOPIC_PARTITIONS = 1

PROCESSOR_GROUP = "playstream-processors"
FINALIZER_GROUP = "playstream-finalizer"

# Batch header, record header and key (a game_id is at most 128 bytes) around one payload.
MESSAGE_OVERHEAD_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = MAX_RECORD_BYTES + MESSAGE_OVERHEAD_BYTES
