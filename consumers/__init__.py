"""Consumers of sealed chunks: the finalizer that compacts them into published training
datasets, the manifest that records what went in, and chunk retention."""
from playstream.consumers.compaction import CompactionResult, CompactOptions, compact
from playstream.consumers.publish import (ChunkEntry, OutputEntry, QuarantinedChunk,
                                          read_manifest)
from playstream.consumers.retention import apply_retention
from playstream.consumers.windows import (AllRows, FixedWindow, KataGoWindow, WindowPolicy,
                                          parse_window)

__all__ = ["AllRows", "ChunkEntry", "CompactOptions", "CompactionResult", "FixedWindow",
           "KataGoWindow", "OutputEntry", "QuarantinedChunk", "WindowPolicy", "apply_retention",
           "compact", "parse_window", "read_manifest"]
