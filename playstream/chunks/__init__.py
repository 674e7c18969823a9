"""The chunk store: sealed, checksummed NPZ chunks whose names record progress.

A chunk holds the rows of one configuration from a contiguous position range of one source
stream (a Kafka partition, or a game file's records). Its name carries the stream and the
range, so a restarted writer knows where to resume from the file names alone, as Kafka
Connect's HDFS sink does.
"""
from playstream.chunks.metadata import ChunkMetadata, ChunkOrigin, SkippedRecord
from playstream.chunks.naming import ChunkName, file_stream_id, topic_stream_id, validate_stream_id
from playstream.chunks.store import ChunkStore, SealedChunk
from playstream.chunks.writer import ChunkWriter

__all__ = ["ChunkMetadata", "ChunkName", "ChunkOrigin", "ChunkStore", "ChunkWriter",
           "SealedChunk", "SkippedRecord", "file_stream_id", "topic_stream_id",
           "validate_stream_id"]
