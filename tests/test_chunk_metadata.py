"""The one chunk-metadata model: what the writer seals is what every reader parses, the
documented on-disk shape still reads, and a malformed field fails naming chunk and field."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from playstream.chunks import ChunkMetadata, ChunkName, ChunkOrigin, ChunkStore, ChunkWriter
from playstream.compaction import CompactOptions, compact
from playstream.dataset import DatasetConfig, NPZDatasetWriter, RowBatch, read_metadata
from playstream.dataset.config import key_scope
from playstream.errors import ChunkError

CONFIG = DatasetConfig(game="connect", game_version="1", board_type="square8", num_players=2,
                       feature_version="v2", history_length=0, channels=("c0",),
                       global_names=(), policy_size=4, height=2, width=2)
SCOPE = key_scope(CONFIG.key())

# The shape docs/FORMAT.md documents and the writer has always written.
ON_DISK = {
    "source": {"kind": "kafka", "topic": "playstream.games", "partition": 3,
               "stream": "playstream.games+3", "first": 10, "last": 12},
    "group": [CONFIG.key()],
    "games": ["g-1", "g-2"],
    "moves_digests": ["5f" * 16, None],
    "skipped": [{"position": 11, "reason": "invalid record"}],
    "skipped_count": 1,
    "sealed_at": "2026-11-24T10:00:00.123456+00:00",
}


def rows(n: int, game: str) -> RowBatch:
    indptr = np.arange(n + 1, dtype=np.int64)
    return RowBatch(features=np.zeros((n, 1, 2, 2), np.float32),
                    globals=np.zeros((n, 0), np.float32), values=np.zeros(n, np.float32),
                    values_mp=np.zeros((n, 2), np.float32), policy_indptr=indptr,
                    policy_indices=np.zeros(n, np.int32), policy_values=np.ones(n, np.float32),
                    game_id=np.array([game] * n), move_number=np.arange(n, dtype=np.int32),
                    player=np.ones(n, np.int8), num_players=np.full(n, 2, np.int8))


def test_chunks_without_move_digests_still_read() -> None:
    older = {k: v for k, v in ON_DISK.items() if k != "moves_digests"}
    assert ChunkMetadata.from_metadata({"extra": older}, path="c.npz").moves_digests == ()


def test_the_documented_shape_parses_and_writes_back_unchanged() -> None:
    meta = ChunkMetadata.from_metadata({"extra": ON_DISK}, path="c.npz")
    assert meta.name == ChunkName("playstream.games+3", 10, 12)
    assert meta.origin == ChunkOrigin.kafka("playstream.games", 3)
    assert meta.games == ("g-1", "g-2") and meta.skipped_count == 1
    assert meta.sealed_at == datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert meta.to_metadata() == ON_DISK


def test_what_the_writer_seals_is_what_readers_parse(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    writer = ChunkWriter(store, "file-g-0123456789", SCOPE,
                         origin=ChunkOrigin.game_file(tmp_path / "g.jsonl"))
    writer.add(1, CONFIG, rows(3, "a"), game_id="a")
    writer.add(2, skipped="other configuration")
    [sealed] = writer.finalize()
    writer.close()
    meta = ChunkMetadata.read(sealed.path)
    assert (meta.stream, meta.first, meta.last) == ("file-g-0123456789", 1, 2)
    assert meta.origin.kind == "file" and meta.origin.file == str(tmp_path / "g.jsonl")
    assert meta.group == (CONFIG.key(),) and meta.games == ("a",)
    assert [(s.position, s.reason) for s in meta.skipped] == [(2, "other configuration")]
    # the raw JSON is the documented one, key for key
    assert read_metadata(sealed.path)["extra"] == meta.to_metadata()
    assert set(meta.to_metadata()) == set(ON_DISK)


@pytest.mark.parametrize("edit, field", [
    (lambda e: e.pop("sealed_at"), "extra.sealed_at"),
    (lambda e: e.update(sealed_at="2026-11-24T10:00:00"), "extra.sealed_at"),
    (lambda e: e["source"].pop("last"), "extra.source.last"),
    (lambda e: e["source"].update(first=-1), "extra.source.first"),
    (lambda e: e["source"].update(kind="ftp"), "extra.source.kind"),
    (lambda e: e["source"].pop("topic"), "extra.source.topic"),
    (lambda e: e.update(games="g-1"), "extra.games"),
    (lambda e: e.update(group=[""]), "extra.group"),
    (lambda e: e["skipped"][0].pop("reason"), "extra.skipped.0.reason"),
    (lambda e: e.update(skipped_count=True), "extra.skipped_count"),
])
def test_a_malformed_field_names_the_chunk_and_the_field(edit: Any, field: str) -> None:
    extra = json.loads(json.dumps(ON_DISK))
    edit(extra)
    with pytest.raises(ChunkError) as err:
        ChunkMetadata.from_metadata({"extra": extra}, path="/store/k/c.npz")
    assert err.value.context == {"path": "/store/k/c.npz", "field": field}
    assert str(err.value).startswith(f"path=/store/k/c.npz field={field}: ")


def test_compaction_quarantines_a_chunk_whose_metadata_is_malformed(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "store")
    writer = ChunkWriter(store, "a+0", SCOPE)
    writer.add(0, CONFIG, rows(2, "a"), game_id="a")
    [good] = writer.finalize()
    writer.add(1, CONFIG, rows(2, "b"), game_id="b")
    [victim] = writer.finalize()
    writer.close()
    extra = read_metadata(victim.path)["extra"]
    del extra["sealed_at"]
    victim.path.unlink()
    with NPZDatasetWriter(victim.path, CONFIG, extra_metadata=extra) as w:
        w.write(rows(2, "b"))
    result = compact(store, CONFIG.key(), tmp_path / "out.npz", CompactOptions())
    assert result.rows == 2 and [c.file for c in result.chunks] == [good.path.name]
    assert [(q.path.name, q.reason) for q in result.quarantined] == [
        (victim.path.name, "extra.sealed_at: missing")]
