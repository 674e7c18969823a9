"""Retention deletes a chunk only when a manifest lists it with its sha256, it is older than the
limit, and it is not its stream's newest range; each rule is tested alone."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from playstream.chunks import ChunkStore, ChunkWriter
from playstream.compaction import apply_retention, compact, read_manifest
from playstream.dataset import DatasetConfig
from playstream.errors import PlaystreamError
from test_compaction import CONFIG, KEY, SCOPE, game_rows, seal

LATER = datetime.now(timezone.utc) + timedelta(hours=2)


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    store = ChunkStore(tmp_path / "chunks")
    seal(store, "a+0", [(f"a{i}", 4) for i in range(6)], max_rows=8)  # 3 chunks
    seal(store, "b+0", [(f"b{i}", 4) for i in range(4)], max_rows=8, seed=20)  # 2 chunks
    return store


def names(store: ChunkStore, key: str = KEY) -> list[str]:
    return [n.filename for n, _ in store.sealed(key)]


def published(store: ChunkStore, out: Path) -> dict[str, Any]:
    compact(store, KEY, out)
    return read_manifest(out)


def test_old_published_chunks_go_except_each_streams_newest(store: ChunkStore,
                                                           tmp_path: Path) -> None:
    before = names(store)
    manifest = published(store, tmp_path / "ds")
    deleted = apply_retention(store, KEY, [manifest], older_than_s=3600, now=LATER)
    assert sorted(p.name for p in deleted) == sorted(before[:2] + before[3:4])
    assert names(store) == [before[2], before[4]]  # a's and b's newest ranges stay
    assert all(not p.exists() for p in deleted)
    # A writer resumes after the newest range, as before retention.
    writer = ChunkWriter(store, "a+0", SCOPE)
    assert writer.next_position == 6
    writer.close()


def test_chunks_younger_than_the_limit_stay(store: ChunkStore, tmp_path: Path) -> None:
    before = names(store)
    manifest = published(store, tmp_path / "ds")
    assert apply_retention(store, KEY, [manifest], older_than_s=3600) == []
    assert apply_retention(store, KEY, [manifest], older_than_s=3 * 3600, now=LATER) == []
    assert names(store) == before
    assert len(apply_retention(store, KEY, [manifest], older_than_s=3600, now=LATER)) == 3


def test_only_chunks_a_manifest_lists_with_the_same_sha256_go(store: ChunkStore,
                                                             tmp_path: Path) -> None:
    before = names(store)
    manifest = published(store, tmp_path / "ds")
    assert apply_retention(store, KEY, [], older_than_s=0, now=LATER) == []
    # A manifest that does not list the first chunk, and one that lists the second with
    # another digest (the file was replaced since it was published).
    partial = {**manifest, "chunks": [c for c in manifest["chunks"] if c["file"] != before[0]]}
    for c in partial["chunks"]:
        if c["file"] == before[1]:
            c["sha256"] = "0" * 64
    deleted = apply_retention(store, KEY, [partial], older_than_s=0, now=LATER)
    assert [p.name for p in deleted] == [before[3]]
    assert names(store) == [before[0], before[1], before[2], before[4]]
    # Manifests of another configuration do not count either.
    other = {**manifest, "chunks": [{**c, "config_key": "other-1_x_2p_v1_h0"}
                                    for c in manifest["chunks"]]}
    assert apply_retention(store, KEY, [other], older_than_s=0, now=LATER) == []


def test_the_newest_range_counts_over_every_configuration(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    other = DatasetConfig(**{**CONFIG.to_metadata(), "board_type": "other"})
    writer = ChunkWriter(store, "a+0", SCOPE, max_rows=100)
    writer.add(0, CONFIG, game_rows("g0", 3, 0), game_id="g0")
    writer.add(1, other, game_rows("g0", 3, 0, other), game_id="g0")
    writer.finalize()  # range 0..1 in both configurations
    writer.add(2, other, game_rows("g1", 3, 1, other), game_id="g1")
    writer.finalize()  # range 2..2 in the other configuration only
    writer.close()
    manifest = published(store, tmp_path / "ds")
    # KEY's only chunk is not the stream's newest range (2..2 of the other configuration).
    deleted = apply_retention(store, KEY, [manifest], older_than_s=0, now=LATER)
    assert [p.name for p in deleted] == ["a+0+00000000000000000000+00000000000000000001.npz"]
    compact(store, other.key(), tmp_path / "other")
    assert apply_retention(store, other.key(), [read_manifest(tmp_path / "other")],
                           older_than_s=0, now=LATER) == \
        [store.config_dir(other.key()) / "a+0+00000000000000000000+00000000000000000001.npz"]
    assert names(store, other.key()) == ["a+0+00000000000000000002+00000000000000000002.npz"]


def test_bad_arguments(store: ChunkStore) -> None:
    with pytest.raises(PlaystreamError, match="older_than_s must not be negative"):
        apply_retention(store, KEY, [], older_than_s=-1)
    with pytest.raises(PlaystreamError, match="time zone"):
        apply_retention(store, KEY, [], older_than_s=1, now=datetime(2030, 1, 1))
