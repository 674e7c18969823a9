"""compact() on real chunk stores in tmp_path: row selection, windows, shuffle, split, shards,
quarantine, configuration checks, and peak memory against the budget."""
from __future__ import annotations

import hashlib
import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from playstream.chunks import ChunkStore, ChunkWriter, SealedChunk
from playstream.compaction import (AllRows, CompactOptions, FixedWindow, KataGoWindow, compact,
                                  parse_window, read_manifest)
from playstream.digests import DigestSet
from playstream.dataset import (DatasetConfig, NPZDatasetWriter, RowBatch, load_npz_dataset,
                                read_metadata)
from playstream.dataset.config import encoder_scope
from playstream.dataset.archive import Archive
from playstream.errors import ChunkError, ConfigMismatchError, PlaystreamError

CONFIG = DatasetConfig(game="connect", game_version="1", board_type="square4", num_players=2,
                       feature_version="v1", history_length=1, channels=("a", "b", "c"),
                       global_names=("g0", "g1"), policy_size=16, height=4, width=4)
KEY = CONFIG.key()
SCOPE = encoder_scope(CONFIG.feature_version, CONFIG.history_length)


def game_rows(game_id: str, moves: int, seed: int, config: DatasetConfig = CONFIG,
              move_numbers: np.ndarray | None = None) -> RowBatch:
    """A game of ``moves`` rows with random tensors (C, H, W from ``config``), two policy
    entries per row that sum to 1."""
    rng = np.random.default_rng(seed)
    n = moves
    first = rng.integers(0, config.policy_size - 1, n)
    weight = rng.random(n).astype(np.float32)
    return RowBatch(
        features=rng.random((n, len(config.channels), config.height, config.width),
                            dtype=np.float32),
        globals=rng.random((n, len(config.global_names)), dtype=np.float32),
        values=rng.uniform(-1, 1, n).astype(np.float32),
        values_mp=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        policy_indptr=np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        policy_indices=np.stack([first, first + 1], axis=1).reshape(-1).astype(np.int32),
        policy_values=np.stack([weight, 1 - weight], axis=1).reshape(-1),
        game_id=np.array([game_id] * n, dtype="<U32"),
        move_number=(np.arange(n) if move_numbers is None else move_numbers).astype(np.int32),
        player=(np.arange(n) % 2 + 1).astype(np.int8),
        num_players=np.full(n, config.num_players, np.int8))


def seal(store: ChunkStore, stream: str, games: list[tuple[str, int]], *, max_rows: int = 10**6,
         config: DatasetConfig = CONFIG, seed: int = 0) -> list[SealedChunk]:
    """Append ``games`` (id, rows) to ``stream`` and seal every chunk; the seed of a game's
    tensors is ``seed`` + its index, so two copies of a game are identical by default."""
    writer = ChunkWriter(store, stream, encoder_scope(config.feature_version, config.history_length),
                         max_rows=max_rows)
    try:
        start = writer.next_position
        sealed = []
        for i, (game_id, moves) in enumerate(games):
            sealed += writer.add(start + i, config, game_rows(game_id, moves, seed + i, config),
                                 game_id=game_id)
        return sealed + writer.finalize()
    finally:
        writer.close()


def key_order(batch: RowBatch) -> np.ndarray:
    return np.lexsort((batch.move_number, batch.game_id))


def keys(batch: RowBatch) -> list[tuple[str, int]]:
    return list(zip(batch.game_id.tolist(), batch.move_number.tolist()))


def assert_same_rows(got: RowBatch, want: RowBatch) -> None:
    """Same multiset of (game_id, move_number) and identical tensors once sorted by it."""
    got, want = got.take(key_order(got)), want.take(key_order(want))
    assert keys(got) == keys(want)
    for name in ("features", "globals", "values", "values_mp", "player", "num_players",
                 "policy_indptr", "policy_indices", "policy_values"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def chunk_rows(sealed: list[SealedChunk]) -> RowBatch:
    return RowBatch.concat([load_npz_dataset(c.path).rows for c in sealed])


def published(out: Path, split: str = "train") -> RowBatch:
    manifest = read_manifest(out)
    files = [o["file"] for o in manifest["outputs"] if o["split"] == split]
    base = out.parent if out.suffix == ".npz" else out / "current"
    return RowBatch.concat([load_npz_dataset(base / f).rows for f in files])


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    return ChunkStore(tmp_path / "chunks")


# -- windows --------------------------------------------------------------------------------
def test_katago_window_matches_the_formula_and_worked_values() -> None:
    w = KataGoWindow(exponent=0.65, expand_per_row=0.4, min_rows=250_000)
    assert w.size(250_000) == 250_000
    assert w.size(1000) == 1000 and w.size(0) == 0
    slope = (w.size(250_000 + 2_000) - w.size(250_000)) / 2_000
    assert slope == pytest.approx(0.4, abs=0.002)
    # Tapered: dW/dN = r * (N / M)^(e - 1), 0.4 * 40^-0.35 = 0.110 at N = 10M.
    assert (w.size(10_000_000 + 2_000) - w.size(10_000_000)) / 2_000 == \
        pytest.approx(0.110, abs=0.002)
    assert w.size(1_000_000) == pytest.approx(475_000, rel=0.002)
    assert w.size(10_000_000) == pytest.approx(1_790_000, rel=0.002)
    assert w.size(100_000_000) == pytest.approx(7_650_000, rel=0.002)
    # r = 1 at e = 1 keeps everything: the window never exceeds N.
    assert KataGoWindow(exponent=1.0, expand_per_row=1.0, min_rows=10).size(500) == 500


def test_fixed_and_all_windows() -> None:
    assert FixedWindow(100).size(40) == 40 and FixedWindow(100).size(400) == 100
    assert AllRows().size(12345) == 12345
    with pytest.raises(PlaystreamError, match="at least 1 row"):
        FixedWindow(0)


def test_parse_window_forms_and_errors() -> None:
    assert parse_window("all") == AllRows()
    assert parse_window(" 500000 ") == FixedWindow(500_000)
    assert parse_window("katago") == KataGoWindow()
    assert parse_window("KataGo:e=0.5, r=0.25 ,m=1000") == KataGoWindow(0.5, 0.25, 1000)
    assert parse_window("katago:m=100") == KataGoWindow(min_rows=100)
    for text, message in [("", "a window is"), ("newest", "unknown window"),
                          ("katago:x=1", "bad KataGo window parameter 'x=1'"),
                          ("katago:e=0.5,e=0.6", "given twice"),
                          ("katago:m=1.5", "m='1.5' is not an integer"),
                          ("katago:e=abc", "is not a number"),
                          ("katago:e=2", "exponent must be in"), ("-5", "unknown window")]:
        with pytest.raises(PlaystreamError, match=message) as info:
            parse_window(text)
        assert info.value.context["field"] == "window"


# -- rows -----------------------------------------------------------------------------------
def test_digest_set_matches_a_python_set() -> None:
    rng = np.random.default_rng(0)
    pool = np.frombuffer(rng.bytes(16 * 3000), dtype="S16")
    digests, seen = DigestSet(), set()
    for _ in range(60):  # many inserts, so levels merge many times
        keys = pool[rng.integers(0, pool.size, rng.integers(0, 200))]
        want = []
        for k in keys.tolist():
            want.append(k not in seen)
            seen.add(k)
        np.testing.assert_array_equal(digests.insert(keys), np.array(want, bool))
    assert not digests.insert(np.array(sorted(seen), dtype="S16")).any()


def test_compact_equals_the_concatenation_of_the_chunks(store: ChunkStore,
                                                       tmp_path: Path) -> None:
    sealed = seal(store, "a+0", [(f"a{i}", 3 + i) for i in range(6)], max_rows=10)
    sealed += seal(store, "b+0", [(f"b{i}", 5) for i in range(4)], max_rows=7, seed=100)
    assert len(sealed) >= 5
    seen: list[int] = []
    result = compact(store, KEY, tmp_path / "ds.npz", progress=seen.append)

    assert_same_rows(published(tmp_path / "ds.npz"), chunk_rows(sealed))
    assert result.rows == result.train_rows == 20 + 33 and result.val_rows == 0
    assert result.games == 10 and result.outputs == [tmp_path / "ds.npz"]
    assert read_metadata(tmp_path / "ds.npz")["games"] == 10
    assert seen == sorted(seen) and seen[-1] == result.rows  # the bar ends at the summary's rows
    # Directory output, unshuffled: the rows stream in chunk order (oldest sealed first).
    compact(store, None, tmp_path / "dir")
    got = published(tmp_path / "dir")
    assert keys(got) == keys(chunk_rows(sealed))


def test_dedup_keeps_the_oldest_copy_of_a_game(store: ChunkStore, tmp_path: Path) -> None:
    older = seal(store, "a+0", [("g1", 4), ("g2", 3)], seed=1)
    # The newer copy of g1 has other tensors: the output must hold the older one.
    newer = seal(store, "b+0", [("g1", 4), ("g3", 2)], seed=50)
    result = compact(store, KEY, tmp_path / "ds.npz")
    assert result.rows == 9 and result.games == 3
    want = RowBatch.concat([load_npz_dataset(older[0].path).rows,
                            load_npz_dataset(newer[0].path).rows.take(np.arange(4, 6))])
    assert_same_rows(published(tmp_path / "ds.npz"), want)
    manifest = read_manifest(tmp_path / "ds.npz")
    assert [(c["stream"], c["rows"], c["rows_used"]) for c in manifest["chunks"]] == \
        [("a+0", 7, 7), ("b+0", 6, 2)]

    kept = compact(store, KEY, tmp_path / "all.npz", CompactOptions(dedup=False))
    assert kept.rows == 13
    assert_same_rows(published(tmp_path / "all.npz"), chunk_rows(older + newer))


def test_dedup_of_a_record_delivered_twice_in_a_row(store: ChunkStore, tmp_path: Path) -> None:
    # At-least-once delivery: the same record at two consecutive positions of one chunk.
    sealed = seal(store, "a+0", [("g1", 3), ("g1", 3), ("g2", 2)])
    assert sealed[0].rows == 8
    result = compact(store, KEY, tmp_path / "ds.npz")
    assert result.rows == 5
    assert sorted(keys(published(tmp_path / "ds.npz"))) == \
        [("g1", 0), ("g1", 1), ("g1", 2), ("g2", 0), ("g2", 1)]


def test_sample_every_and_min_moves(store: ChunkStore, tmp_path: Path) -> None:
    seal(store, "a+0", [("long", 7), ("short", 2), ("mid", 4)])
    compact(store, KEY, tmp_path / "s.npz", CompactOptions(sample_every=3))
    assert sorted(keys(published(tmp_path / "s.npz"))) == \
        [("long", 0), ("long", 3), ("long", 6), ("mid", 0), ("mid", 3), ("short", 0)]
    # min_moves counts every row of the game in the chunk, before sampling.
    compact(store, KEY, tmp_path / "m.npz", CompactOptions(min_moves=4, sample_every=2))
    assert sorted(keys(published(tmp_path / "m.npz"))) == \
        [("long", 0), ("long", 2), ("long", 4), ("long", 6), ("mid", 0), ("mid", 2)]


def test_fixed_window_keeps_the_newest_rows(store: ChunkStore, tmp_path: Path) -> None:
    sealed = seal(store, "a+0", [(f"g{i}", 4) for i in range(9)], max_rows=8)
    assert len(sealed) == 5  # 8, 8, 8, 8, 4 rows, sealed oldest to newest
    everything = chunk_rows(sealed)
    result = compact(store, KEY, tmp_path / "w.npz", CompactOptions(window=FixedWindow(14)))
    assert result.rows == 14
    assert keys(published(tmp_path / "w.npz")) == keys(everything)[-14:]
    manifest = read_manifest(tmp_path / "w.npz")
    assert [c["rows_used"] for c in manifest["chunks"]] == [0, 0, 2, 8, 4]


def test_katago_window_with_a_small_min_rows(store: ChunkStore, tmp_path: Path) -> None:
    sealed = seal(store, "a+0", [(f"g{i}", 5) for i in range(40)], max_rows=20)
    window = KataGoWindow(exponent=0.65, expand_per_row=0.4, min_rows=50)
    want = window.size(200)
    expected = (200 ** 0.65 - 50 ** 0.65) / (0.65 * 50 ** -0.35) * 0.4 + 50
    assert want == math.floor(expected) == 94
    result = compact(store, KEY, tmp_path / "k.npz", CompactOptions(window=window))
    assert result.rows == 94
    assert keys(published(tmp_path / "k.npz")) == keys(chunk_rows(sealed))[-94:]


def test_window_applies_after_dedup_and_sampling(store: ChunkStore, tmp_path: Path) -> None:
    seal(store, "a+0", [("g1", 6), ("g2", 6)])
    seal(store, "b+0", [("g2", 6), ("g3", 6)])  # g2 is a duplicate: not usable
    result = compact(store, KEY, tmp_path / "w.npz",
                     CompactOptions(window=FixedWindow(5), sample_every=2))
    assert keys(published(tmp_path / "w.npz")) == \
        [("g2", 2), ("g2", 4), ("g3", 0), ("g3", 2), ("g3", 4)]
    assert result.games == 2


# -- shuffle, split, shards -----------------------------------------------------------------
def test_shuffle_is_a_seeded_permutation(store: ChunkStore, tmp_path: Path) -> None:
    sealed = seal(store, "a+0", [(f"g{i}", 20 + i % 7) for i in range(160)], max_rows=500)
    plain = chunk_rows(sealed)
    # 1 MiB budget: buckets of 256 KiB, so this ~1.1 MB of rows goes through several.
    def run(name: str, seed: int) -> RowBatch:
        compact(store, KEY, tmp_path / name, CompactOptions(shuffle=True, seed=seed,
                                                            memory_budget_bytes=1 << 20))
        return published(tmp_path / name)

    first, again, other = run("s1", 7), run("s2", 7), run("s3", 8)
    assert len(first) == len(plain) == 3677
    assert_same_rows(first, plain)
    assert keys(first) == keys(again)
    np.testing.assert_array_equal(first.features, again.features)
    assert keys(first) != keys(other) and keys(first) != keys(plain)
    assert_same_rows(other, plain)
    # Rows of a game are spread out, not left in runs.
    position = {k: i for i, k in enumerate(keys(first))}
    spread = [position[("g0", m)] for m in range(20)]
    assert max(spread) - min(spread) > len(first) // 4


def test_chunks_that_store_their_planes_differently_compact_to_the_same_rows(
        store: ChunkStore, tmp_path: Path) -> None:
    """Each chunk stores a channel by what its own rows hold (bits, once, float); compaction
    moves the rows packed under one storage that holds every chunk exactly, a dense
    (format 2) chunk included."""
    mask = (np.arange(16).reshape(4, 4) % 3 == 0).astype(np.float32)

    def planes(game_id: str, seed: int, a_bits: bool, c_bits: bool, b: np.ndarray) -> RowBatch:
        rows = game_rows(game_id, 6, seed)
        rng = np.random.default_rng(seed + 50)
        rows.features[:, 0] = rng.integers(0, 2, (6, 4, 4)) if a_bits else 0.0
        rows.features[:, 1] = b
        if c_bits:
            rows.features[:, 2] = rng.integers(0, 2, (6, 4, 4))
        return rows

    def add(games: list[RowBatch]) -> list[SealedChunk]:
        writer = ChunkWriter(store, "a+0", SCOPE, max_rows=6)  # a chunk per game
        try:
            start, sealed = writer.next_position, []
            for i, rows in enumerate(games):
                sealed += writer.add(start + i, CONFIG, rows, game_id=str(rows.game_id[0]))
            return sealed + writer.finalize()
        finally:
            writer.close()

    def storage_of(name: str) -> dict[str, list[int]]:
        return read_metadata(tmp_path / name / "current" / "train.npz")["feature_storage"]

    sealed = add([planes("g0", 0, True, False, mask), planes("g1", 1, False, True, mask),
                  planes("g2", 2, False, True, mask)])
    assert [read_metadata(c.path)["feature_storage"] for c in sealed[:2]] == [
        {"bits": [0], "float": [2], "constant": [1]},
        {"bits": [2], "float": [], "constant": [0, 1]}]
    dense = sealed[2].path
    meta = read_metadata(dense)
    rows = load_npz_dataset(dense).rows
    with NPZDatasetWriter(dense, DatasetConfig.from_metadata(meta), format_version=2,
                          extra_metadata=meta["extra"]) as writer:
        writer.write(rows)
    want = chunk_rows(sealed)
    for shuffle in (False, True):
        name = f"out-{shuffle}"
        compact(store, KEY, tmp_path / name, CompactOptions(shuffle=shuffle, seed=3))
        assert_same_rows(published(tmp_path / name), want)
        assert storage_of(name) == {"bits": [0], "float": [2], "constant": [1]}
    # A chunk whose channel 1 is another constant plane: the channel is bits from now on.
    sealed += add([planes("g3", 3, True, True, 1 - mask)])
    compact(store, KEY, tmp_path / "again", CompactOptions(shuffle=True, seed=3))
    assert_same_rows(published(tmp_path / "again"), chunk_rows(sealed))
    assert storage_of("again") == {"bits": [0, 1], "float": [2], "constant": []}


def test_split_by_game_hash_is_disjoint_and_stable(store: ChunkStore, tmp_path: Path) -> None:
    games = [(f"game-{i}", 3) for i in range(60)]
    sealed = seal(store, "a+0", games, max_rows=40)
    options = CompactOptions(val_fraction=0.3, shuffle=True, seed=3)
    result = compact(store, KEY, tmp_path / "one", options)
    train, val = published(tmp_path / "one", "train"), published(tmp_path / "one", "val")
    expected_val = {g for g, _ in games
                    if int.from_bytes(hashlib.sha256(g.encode()).digest()[:8], "big") / 2**64
                    < 0.3}
    assert set(val.game_id.tolist()) == expected_val and 10 <= len(expected_val) <= 26
    assert not set(train.game_id.tolist()) & set(val.game_id.tolist())
    assert_same_rows(RowBatch.concat([train, val]), chunk_rows(sealed))
    assert (result.train_rows, result.val_rows) == (len(train), len(val))
    assert result.games == 60
    # Another run, another seed, unshuffled: the same games on each side.
    compact(store, KEY, tmp_path / "two", CompactOptions(val_fraction=0.3))
    assert set(published(tmp_path / "two", "val").game_id.tolist()) == expected_val
    manifest = read_manifest(tmp_path / "one")
    assert manifest["totals"]["val_games"] == len(expected_val)
    assert [o["file"] for o in manifest["outputs"]] == ["train.npz", "val.npz"]


def test_shards_have_the_requested_sizes(store: ChunkStore, tmp_path: Path) -> None:
    seal(store, "a+0", [(f"g{i}", 6) for i in range(5)], max_rows=9)
    result = compact(store, KEY, tmp_path / "out", CompactOptions(shard_rows=7, shuffle=True))
    names = [p.name for p in result.outputs]
    assert names == [f"train-{i:05d}.npz" for i in range(5)]
    assert [len(load_npz_dataset(p).rows) for p in result.outputs] == [7, 7, 7, 7, 2]
    manifest = read_manifest(tmp_path / "out")
    assert [o["rows"] for o in manifest["outputs"]] == [7, 7, 7, 7, 2]
    assert all(p.parent == (tmp_path / "out" / "current").resolve() for p in result.outputs)


def test_dense_policy_and_compression(store: ChunkStore, tmp_path: Path) -> None:
    sealed = seal(store, "a+0", [(f"g{i}", 5) for i in range(4)])
    compact(store, KEY, tmp_path / "d", CompactOptions(dense_policy=True, compress=True))
    data = load_npz_dataset(tmp_path / "d" / "current" / "train.npz")
    assert data.policy is not None
    np.testing.assert_array_equal(data.policy, data.rows.dense_policy(CONFIG.policy_size))
    assert_same_rows(data.rows, chunk_rows(sealed))
    with Archive(tmp_path / "d" / "current" / "train.npz") as archive:
        assert archive.read_header("values").data_offset is None  # deflated


# -- chunk checks ---------------------------------------------------------------------------
def flip_data_byte(path: Path) -> str:
    """Flip a low bit in the middle of the largest array (big enough that zipfile does not
    read it to its CRC when the header is read); returns the array's name."""
    with Archive(path) as archive:
        members = [archive.read_header(name) for name in archive.infos if name != "metadata"]
    member = max(members, key=lambda m: m.nbytes)
    assert member.data_offset is not None and member.nbytes > 8192
    with open(path, "r+b") as fh:
        fh.seek(member.data_offset + member.nbytes // 2)
        byte = fh.read(1)
        fh.seek(member.data_offset + member.nbytes // 2)
        fh.write(bytes([byte[0] ^ 0x01]))
    return member.name


def test_a_chunk_with_a_flipped_byte_is_quarantined(store: ChunkStore, tmp_path: Path) -> None:
    good = seal(store, "a+0", [("g1", 4)])
    bad = seal(store, "b+0", [("g2", 400)])  # big enough that zip CRCs are not read first
    flipped = flip_data_byte(bad[0].path)
    result = compact(store, KEY, tmp_path / "ds.npz")

    assert not bad[0].path.exists()
    moved = store.root / "quarantine" / KEY / bad[0].path.name
    assert moved.exists()
    reason = json.loads((moved.parent / f"{moved.name}.reason.json").read_text())
    assert reason["reason"] == ("checksums failed: sha256 of the array does not match the "
                                "metadata checksum (the data, its dtype or its shape changed) "
                                f"(array {flipped})")
    assert result.quarantined == [(moved, reason["reason"])]
    assert_same_rows(published(tmp_path / "ds.npz"), chunk_rows(good))
    manifest = read_manifest(tmp_path / "ds.npz")
    assert manifest["quarantined"] == [{"file": bad[0].path.name, "reason": reason["reason"],
                                        "moved_to": str(moved)}]
    assert [c["file"] for c in manifest["chunks"]] == [good[0].path.name]


def test_a_renamed_chunk_is_quarantined(store: ChunkStore, tmp_path: Path) -> None:
    sealed = seal(store, "a+0", [("g1", 4)])
    seal(store, "b+0", [("g2", 4)])
    renamed = sealed[0].path.with_name("a+0+00000000000000000005+00000000000000000009.npz")
    sealed[0].path.rename(renamed)
    result = compact(store, KEY, tmp_path / "ds.npz")
    assert [q.path.name for q in result.quarantined] == [renamed.name]
    assert "does not match the file name's range a+0 5..9" in result.quarantined[0].reason
    assert result.rows == 4


def test_mixed_configurations_are_refused(store: ChunkStore, tmp_path: Path) -> None:
    seal(store, "a+0", [("g1", 4)])
    other = DatasetConfig(**{**CONFIG.to_metadata(), "history_length": 3})
    foreign = seal(store, "b+0", [("g2", 4)], config=other)
    with pytest.raises(ConfigMismatchError, match="2 configurations") as info:
        compact(store, None, tmp_path / "ds.npz")
    assert KEY in str(info.value) and other.key() in str(info.value)
    # A chunk of another configuration copied into this configuration's folder.
    (store.config_dir(KEY) / foreign[0].path.name).write_bytes(foreign[0].path.read_bytes())
    with pytest.raises(ConfigMismatchError, match="history_length: 1 != 3") as info:
        compact(store, KEY, tmp_path / "ds.npz")
    assert info.value.context["fields"] == "history_length"
    assert not (tmp_path / "ds.npz").exists()


def test_no_chunks_and_bad_options(store: ChunkStore, tmp_path: Path) -> None:
    with pytest.raises(ChunkError, match="holds no configuration"):
        compact(store, None, tmp_path / "ds.npz")
    with pytest.raises(ChunkError, match="no valid sealed chunk"):
        compact(store, KEY, tmp_path / "ds.npz")
    with pytest.raises(PlaystreamError, match="cannot hold a val split or shards") as info:
        compact(store, KEY, tmp_path / "ds.npz", CompactOptions(val_fraction=0.1))
    assert info.value.context["field"] == "val_fraction"
    with pytest.raises(PlaystreamError, match="cannot hold a val split or shards"):
        compact(store, KEY, tmp_path / "ds.npz", CompactOptions(shard_rows=10))
    for kwargs, name in [({"val_fraction": 1.0}, "val_fraction"),
                         ({"shard_rows": 0}, "shard_rows"), ({"sample_every": 0}, "sample_every"),
                         ({"memory_budget_bytes": 1000}, "memory_budget_bytes"),
                         ({"keep_versions": 0}, "keep_versions")]:
        with pytest.raises(PlaystreamError, match=f"^field={name}: {name} "):
            CompactOptions(**kwargs)  # type: ignore[arg-type]
    seal(store, "a+0", [("g1", 4)])

    class TooMany:
        def size(self, n_rows: int) -> int:
            return n_rows + 1

    with pytest.raises(PlaystreamError, match="kept 5 of 4 rows"):
        compact(store, KEY, tmp_path / "ds.npz", CompactOptions(window=TooMany()))
    assert not (tmp_path / "ds.npz").exists()


# -- memory ---------------------------------------------------------------------------------
BIG = DatasetConfig(**{**CONFIG.to_metadata(), "channels": [f"c{i}" for i in range(16)],
                       "board_type": "square8", "height": 8, "width": 8, "policy_size": 64})


def test_peak_memory_stays_within_the_budget_not_the_data(store: ChunkStore,
                                                           tmp_path: Path) -> None:
    budget = 8 << 20
    sealed = seal(store, "a+0", [(f"g{i}", 30) for i in range(400)], max_rows=600, config=BIG)
    data = sum(c.path.stat().st_size for c in sealed)
    assert data > 5 * budget  # 12,000 rows of 4 KiB features: ~50 MB in 20 chunks
    options = CompactOptions(shuffle=True, seed=1, val_fraction=0.1, memory_budget_bytes=budget)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = compact(store, BIG.key(), tmp_path / "out", options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"data {data / 2**20:.1f} MiB, budget {budget / 2**20:.0f} MiB, "
          f"peak traced {peak / 2**20:.1f} MiB, {result.seconds:.2f} s")
    assert result.rows == 12_000 and result.bytes_written > data * 0.9
    assert peak < 2.5 * budget
