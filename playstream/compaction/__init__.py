"""Compaction passes: sealed chunks → a training dataset (window, dedup, sampling, external
shuffle, split, shards), its atomic publication with a manifest, and chunk retention. Pure
core: it reads and writes the chunk store and output folders, never Kafka, so `compact`,
`export` and the Kafka finalizer run the same passes."""
from playstream.compaction.compact import CompactionResult, CompactOptions, compact
from playstream.compaction.publish import (ChunkEntry, OutputEntry, QuarantinedChunk,
                                           read_manifest)
from playstream.compaction.retention import apply_retention
from playstream.compaction.windows import (AllRows, FixedWindow, KataGoWindow, WindowPolicy,
                                           parse_window)

__all__ = ["AllRows", "ChunkEntry", "CompactOptions", "CompactionResult", "FixedWindow",
           "KataGoWindow", "OutputEntry", "QuarantinedChunk", "WindowPolicy", "apply_retention",
           "compact", "parse_window", "read_manifest"]
