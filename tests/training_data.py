"""Real training data for the loader and trainer tests: seeded self-play games encoded into a
chunk store and compacted into published dataset versions, as the pipeline does."""
from __future__ import annotations

from pathlib import Path

from playstream.chunks import ChunkStore, ChunkWriter
from playstream.compaction import CompactOptions, compact
from playstream.dataset.config import encoder_scope
from playstream.dataset.schema import FORMAT_VERSION
from playstream.incremental import IncrementalExporter
from playstream.selfplay.generate import generate_records

FEATURES, HISTORY = "v2", 1


def add_games(store: ChunkStore, stream: str, *, board_type: str, start: int, count: int,
              agent: str = "random", simulations: int = 16, seed: int = 0,
              chunk_rows: int = 10_000) -> None:
    """Self-play games start..start+count-1 into sealed chunks of ``stream``."""
    writer = ChunkWriter(store, stream, encoder_scope(FEATURES, HISTORY), max_rows=chunk_rows)
    try:
        exporter = IncrementalExporter(writer, feature_version=FEATURES, history_length=HISTORY)
        position = writer.next_position
        records = generate_records(board_type=board_type, num_players=2, agent=agent,
                                   seed=seed, start=start, count=count,
                                   simulations=simulations, node="test")
        for i, record in enumerate(records):
            result = exporter.add_game(position + i, record.model_dump(mode="json"))
            assert result.invalid is None, result.invalid
        exporter.finalize()
    finally:
        writer.close()


def publish(store: ChunkStore, output: Path, *, shard_rows: int = 97,
            val_fraction: float = 0.0, keep_versions: int = 3,
            format_version: int = FORMAT_VERSION) -> None:
    """A new version of the store's dataset at ``output`` (a finalizer output folder)."""
    compact(store, None, output, CompactOptions(shard_rows=shard_rows,
                                                val_fraction=val_fraction,
                                                keep_versions=keep_versions,
                                                format_version=format_version))
