"""Chunks and datasets on the storage port: the same chunk writer, compaction, publication and
retention on a local folder and on a real S3Proxy (tests/s3_fixtures.py, no mocks), the
chunk cover that counts every stream position once when two owners sealed overlapping ranges,
a zombie owner's seal, versions published shards → manifest → pointer, and the CLI on s3://."""
from __future__ import annotations


import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from playstream.chunks import ChunkName, ChunkStore, ChunkWriter
from playstream.compaction import CompactOptions, apply_retention, compact, read_manifest
from playstream.compaction.cover import chunk_cover
from playstream.dataset import load_npz_dataset, read_metadata
from playstream.errors import ChunkError, DatasetError
from playstream.storage import download, open_storage
from test_compaction import CONFIG, KEY, SCOPE, game_rows, keys, seal

MiB = 1 << 20


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where this test's stores live: a local folder, or a fresh prefix of the S3 bucket."""
    if request.param == "local":
        return str(tmp_path / "store")
    request.getfixturevalue("s3_env")
    return f"s3://{request.getfixturevalue('s3_bucket')}/{request.getfixturevalue('s3_prefix')}"


def child(location: str, name: str) -> str:
    return f"{location}/{name}"


def dataset_keys(location: str, tmp_path: Path) -> Counter[tuple[str, int]]:
    """(game_id, move_number) of every row of the current version of a dataset."""
    manifest = read_manifest(location)
    rows: Counter[tuple[str, int]] = Counter()
    storage = open_storage(location)
    current = (storage.read(  # the pointer names the version on S3; a symlink locally
        "current").decode().strip() if location.startswith("s3://")
        else Path(location, "current").resolve().name)
    for out in manifest["outputs"]:
        if location.startswith("s3://"):
            folder = tmp_path / f"dl-{current}"
            folder.mkdir(exist_ok=True)
            path = download(f"{location}/{current}/{out['file']}", folder)
        else:
            path = Path(location, current, out["file"])
        rows.update(keys(load_npz_dataset(path).rows))
    return rows


# -- the cover ------------------------------------------------------------------------------
def test_cover_follows_the_chain_that_reaches_furthest() -> None:
    n = lambda a, b, s="t+0": ChunkName(s, a, b)  # noqa: E731
    # B sealed 0..9, 10..19, 20..29; a zombie A sealed 10..24 after resuming at 10.
    cover, superseded = chunk_cover([n(0, 9), n(10, 19), n(20, 29), n(10, 24)])
    assert cover == [n(0, 9), n(10, 19), n(20, 29)] and superseded == [n(10, 24)]
    # Until B seals 20..29, A's longer range is the cover: each position once either way.
    cover, superseded = chunk_cover([n(0, 9), n(10, 19), n(10, 24)])
    assert cover == [n(0, 9), n(10, 24)] and superseded == [n(10, 19)]
    # A gap (retention removed 0..9) and a second stream.
    cover, _ = chunk_cover([n(10, 19), n(20, 29), n(0, 4, "u+1"), n(5, 9, "u+1")])
    assert cover == [n(10, 19), n(20, 29), n(0, 4, "u+1"), n(5, 9, "u+1")]
    # Never two chunks that share a position, whatever the set.
    rng = np.random.default_rng(3)
    for _ in range(200):
        names = set()
        for _ in range(8):
            a = int(rng.integers(0, 40))
            names.add(n(a, a + int(rng.integers(0, 10))))
        cover, superseded = chunk_cover(names)
        assert set(cover) | set(superseded) == names
        assert all(not x.overlaps(y) for i, x in enumerate(cover) for y in cover[i + 1:])


# -- the same pipeline on both stores --------------------------------------------------------
def test_chunks_compaction_and_versions_on_the_store(location: str, tmp_path: Path) -> None:
    store = ChunkStore(child(location, "chunks"))
    games = [(f"g{i}", 3 + i % 4) for i in range(12)]
    sealed = seal(store, "t+0", games, max_rows=10)
    assert len(sealed) > 2
    for c in sealed:
        assert c.object_name == f"{KEY}/{c.name.filename}"
        assert store.sha256(KEY, c.name) == c.sha256
    assert store.config_keys() == [KEY]
    # A restarted writer resumes one past the last sealed position, from the names alone.
    writer = ChunkWriter(store, "t+0", SCOPE)
    assert writer.next_position == len(games)
    writer.close()
    out = child(location, "datasets/ds")
    first = compact(store, KEY, out, CompactOptions(val_fraction=0.3, shard_rows=7))
    want = Counter((g, m) for g, moves in games for m in range(moves))
    assert dataset_keys(out, tmp_path) == want
    assert first.rows == sum(want.values())
    seal(store, "t+0", [("late", 5)])
    second = compact(store, KEY, out, CompactOptions(val_fraction=0.3, shard_rows=7))
    assert second.version != first.version
    assert dataset_keys(out, tmp_path) == want + Counter(("late", m) for m in range(5))
    assert {c["file"] for c in read_manifest(out)["chunks"]} == \
        {n.filename for n in store.chunks(KEY)}


def test_a_bad_chunk_is_quarantined_on_the_store(location: str, tmp_path: Path) -> None:
    store = ChunkStore(child(location, "chunks"))
    good = seal(store, "a+0", [("g1", 4)])[0]
    bad = seal(store, "b+0", [("g2", 400)])[0]
    # Flip a byte in the middle of the bad chunk's object: its checksums fail.
    local = tmp_path / "bad.npz"
    local.write_bytes(store.storage.read(bad.object_name))
    raw = bytearray(local.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    store.storage.write(bad.object_name, bytes(raw))
    result = compact(store, KEY, child(location, "out"), CompactOptions())
    assert [q.path.name for q in result.quarantined] == [bad.name.filename]
    assert store.chunks(KEY) == [good.name]
    assert store.quarantined() == [f"quarantine/{KEY}/{bad.name.filename}"]
    reason = json.loads(store.storage.read(f"quarantine/{KEY}/{bad.name.filename}.reason.json"))
    assert reason["chunk"] == bad.name.filename and "failed" in reason["reason"]


# -- exactly once without a lock -------------------------------------------------------------
def s3_store(request: pytest.FixtureRequest, **options: int) -> ChunkStore:
    request.getfixturevalue("s3_env")
    from playstream.storage.s3 import S3Storage
    return ChunkStore(S3Storage(request.getfixturevalue("s3_bucket"),
                                request.getfixturevalue("s3_prefix"), **options))


def feed(writer: ChunkWriter, positions: range, seal_at: Callable[[int], bool]
         ) -> list[ChunkName]:
    """Add the game at each position (game ``p<pos>``, 3 rows, tensors seeded by the position,
    so every owner reads the same record the same way); seal where ``seal_at`` says."""
    names = []
    for pos in positions:
        names += [c.name for c in writer.add(pos, CONFIG, game_rows(f"p{pos}", 3, pos),
                                             game_id=f"p{pos}")]
        if seal_at(pos):
            names += [c.name for c in writer.finalize()]
    return names


def test_a_zombie_that_seals_the_same_range_adopts_the_new_owners_chunk(
        request: pytest.FixtureRequest) -> None:
    store = s3_store(request)
    zombie = ChunkWriter(store, "t+0", SCOPE)        # no lock on an object store
    owner = ChunkWriter(store, "t+0", SCOPE)
    every_4 = lambda pos: pos % 4 == 3  # noqa: E731  count-based boundaries by offset
    assert feed(owner, range(0, 8), every_4) == [ChunkName("t+0", 0, 3), ChunkName("t+0", 4, 7)]
    before = {n: store.sha256(KEY, n) for n in store.chunks(KEY)}
    # The zombie read the same records before it was paused; its seal finds the names taken
    # (create_if_absent is False), checks the rows agree and reports the owner's chunk.
    sealed = []
    for pos in range(0, 4):
        sealed += zombie.add(pos, CONFIG, game_rows(f"p{pos}", 3, pos), game_id=f"p{pos}")
    sealed += zombie.finalize()
    assert [(c.name, c.sha256) for c in sealed] == [(ChunkName("t+0", 0, 3),
                                                     before[ChunkName("t+0", 0, 3)])]
    assert {n: store.sha256(KEY, n) for n in store.chunks(KEY)} == before
    zombie.close()
    owner.close()


def test_a_zombie_with_other_boundaries_is_refused_or_covered(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = s3_store(request)
    zombie = ChunkWriter(store, "t+0", SCOPE)
    feed(zombie, range(0, 4), lambda pos: pos == 3)           # both see 0..3 sealed
    owner = ChunkWriter(store, "t+0", SCOPE)
    assert owner.next_position == zombie.next_position == 4
    # The zombie holds 4..9 open when it is paused; the new owner seals 4..6 and 7..12.
    for pos in range(4, 10):
        zombie.add(pos, CONFIG, game_rows(f"p{pos}", 3, pos), game_id=f"p{pos}")
    feed(owner, range(4, 13), lambda pos: pos in (6, 12))
    # Resumed, the zombie lists before its seal and refuses the overlapping range.
    with pytest.raises(ChunkError, match="overlaps the sealed chunk"):
        zombie.finalize()
    zombie.discard()
    # The race the listing cannot close (both listed before either sealed): the overlapping
    # object exists anyway. The cover still counts every position once, dedup or not.
    zombie_chunk = ChunkWriter(ChunkStore(tmp_path / "zombie-build"), "t+0", SCOPE)
    for pos in range(0, 10):
        zombie_chunk.add(pos, CONFIG, game_rows(f"p{pos}", 3, pos), game_id=f"p{pos}")
        if pos == 3:
            zombie_chunk.finalize()
    built = zombie_chunk.finalize()[0]
    assert built.name == ChunkName("t+0", 4, 9)
    assert store.seal(KEY, built.name, built.path)
    zombie_chunk.close()
    assert store.chunks(KEY) == [ChunkName("t+0", 0, 3), ChunkName("t+0", 4, 6),
                                 ChunkName("t+0", 4, 9), ChunkName("t+0", 7, 12)]
    out = f"s3://{request.getfixturevalue('s3_bucket')}/{request.getfixturevalue('s3_prefix')}/ds"
    result = compact(store, KEY, out, CompactOptions(dedup=False))
    assert dataset_keys(out, tmp_path) == Counter((f"p{p}", m) for p in range(13)
                                                  for m in range(3))
    assert read_manifest(out)["superseded"] == [ChunkName("t+0", 4, 9).filename]
    assert result.rows == 13 * 3
    # Retention may delete the superseded chunk (no dataset reads it) but keeps the newest.
    deleted = apply_retention(store, KEY, [read_manifest(out)], older_than_s=0)
    assert store.url(KEY, ChunkName("t+0", 4, 9)) in deleted
    assert ChunkName("t+0", 7, 12) in store.chunks(KEY)
    zombie.close()
    owner.close()


def test_large_chunks_go_up_in_parts(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = s3_store(request, part_size=5 * MiB, multipart_threshold=5 * MiB)
    sealed = seal(store, "t+0", [("big", 45_000)])   # ~ 12 MiB: three parts
    info = store.storage.stat(sealed[0].object_name)
    assert info.size > 10 * MiB
    assert info.etag is not None and info.etag.strip('"').endswith(f"-{-(-info.size // (5 * MiB))}")
    path, digest = store.fetch(KEY, sealed[0].name, tmp_path)
    assert digest == sealed[0].sha256 and read_metadata(path)["rows"] == 45_000


# -- publication ----------------------------------------------------------------------------
def test_a_reader_never_sees_a_half_published_version(request: pytest.FixtureRequest,
                                                      tmp_path: Path) -> None:
    store = s3_store(request)
    seal(store, "t+0", [("g1", 4), ("g2", 5)])
    out = f"s3://{request.getfixturevalue('s3_bucket')}/{request.getfixturevalue('s3_prefix')}/ds"
    first = compact(store, KEY, out, CompactOptions())
    storage = open_storage(out)
    # A stale claim (a finalizer that died after claiming) only skips its number.
    n = int(first.version.rsplit("-", 1)[1]) + 1
    storage.create_if_absent(f"claims/{n:012d}", b"a dead finalizer")
    seal(store, "t+0", [("g3", 3)])
    second = compact(store, KEY, out, CompactOptions())
    assert second.version.endswith(f"-{n + 1}") and second.rows == 12

    # Two finalizers that listed at the same time pick the same number; the real server's
    # conditional put refuses the second claim, before any shard is written.
    class Racing:
        """The real store, except that another finalizer claims a version number right
        between our listing and our claim."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __getattr__(self, attr: str) -> object:
            return getattr(self.inner, attr)

        def create_if_absent(self, name: str, data: object) -> bool:
            if name.startswith("claims/"):
                assert self.inner.create_if_absent(name, b"the other finalizer")
            return bool(self.inner.create_if_absent(name, data))

    from playstream.compaction.publish import ObjectPublication
    seal(store, "t+0", [("g4", 2)])
    before = {o.name for o in storage.list("")}
    with ObjectPublication(out, keep_versions=3) as pub:
        pub.storage = Racing(pub.storage)
        (pub.staging / "train.npz").write_bytes(b"not reached")
        with pytest.raises(DatasetError, match="another finalizer"):
            pub.commit({"outputs": [{"file": "train.npz"}]})
    after = {o.name for o in storage.list("")}
    assert after - before == {f"claims/{n + 2:012d}"}      # only the other one's claim
    assert storage.read("current").decode().strip() == second.version
    assert read_manifest(out)["totals"]["rows"] == 12
    assert {o.name for o in storage.list(f"{second.version}/")} == {
        f"{second.version}/train.npz", f"{second.version}/manifest.json"}
    # keep_versions=3: the oldest versions are pruned whole, the pointer object stays last
    for _ in range(3):
        compact(store, KEY, out, CompactOptions())
    versions = {o.name.split("/")[0] for o in storage.list("") if "/" in o.name} - {"claims"}
    assert len(versions) == 3 and storage.read("current").decode().strip() in versions
    assert {o.name for o in storage.list("claims/")} >= {
        f"claims/{int(v.rsplit('-', 1)[1]):012d}" for v in versions}


# -- the command line -----------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "playstream", *args], capture_output=True,
                          text=True, timeout=300)


def test_export_validate_inspect_on_s3(s3_env: dict[str, str], s3_bucket: str, s3_prefix: str,
                                       tmp_path: Path) -> None:
    games = tmp_path / "games.jsonl"
    made = run_cli("selfplay", "--board-type", "square8", "--num-players", "2", "--games", "6",
                   "--agent", "random", "--output", str(games))
    assert made.returncode == 0, made.stderr
    base = f"s3://{s3_bucket}/{s3_prefix}"
    export = run_cli("export", "--jsonl", str(games), "--board-type", "square8",
                     "--num-players", "2", "--chunks", f"{base}/chunks",
                     "--output", f"{base}/ds", "--val-fraction", "0.2")
    assert export.returncode == 0, export.stderr
    manifest = read_manifest(f"{base}/ds")
    version = open_storage(f"{base}/ds").read("current").decode().strip()
    shard = f"{base}/ds/{version}/{manifest['outputs'][0]['file']}"
    valid = run_cli("validate", shard)
    assert valid.returncode == 0 and f"valid: {shard}" in valid.stdout, valid.stdout
    shown = run_cli("inspect", f"{base}/ds")
    assert shown.returncode == 0, shown.stderr
    assert f"dataset {manifest['config_key']}" in shown.stdout and "chunk file-games" in shown.stdout
    shown = run_cli("inspect", shard)
    assert shown.returncode == 0 and "features" in shown.stdout, shown.stderr
    compacted = run_cli("compact", "--chunks", f"{base}/chunks", "--output", str(tmp_path / "x.npz"))
    assert compacted.returncode == 0, compacted.stderr
    assert load_npz_dataset(tmp_path / "x.npz").rows.game_id.size == manifest["totals"]["rows"]
    bad = run_cli("validate", f"{base}/nothing.npz")
    assert bad.returncode != 0 and "no such object" in bad.stderr


def test_seals_wait_out_a_restarting_server(request: pytest.FixtureRequest, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """S3Proxy is SIGKILLed and restarted while a writer seals chunks, some big enough to go
    up in parts: every seal completes once the server is back, and every chunk is whole.
    The server is killed before the second seal and started again 8 s later, and botocore
    retries only once (about a second), so that seal certainly meets it down and the store's
    own wait is what carries it (a restart racing the seals could fall between two of them,
    or be bridged by botocore's retries alone)."""
    import threading
    server = request.getfixturevalue("s3_server")
    store = s3_store(request, part_size=5 * MiB, multipart_threshold=5 * MiB, max_attempts=2)
    writer = ChunkWriter(store, "t+0", SCOPE, max_rows=12_000)

    def start_later() -> None:
        time.sleep(8)
        server.start()

    restart = threading.Thread(target=start_later)
    sealed = []
    with caplog.at_level("WARNING", logger="playstream.chunks.store"):
        for pos, rows in enumerate((12_000, 12_000, 24_000, 24_000)):  # ~3.5 and ~7 MiB
            if pos == 1:
                server.stop(kill=True)
                restart.start()
            sealed += writer.add(pos, CONFIG, game_rows(f"p{pos}", rows, pos),
                                 game_id=f"p{pos}")
        sealed += writer.finalize()
        restart.join()
    writer.close()
    assert any(r.getMessage() == "chunk store unreachable; retrying" for r in caplog.records)
    assert [c.name for c in sealed] == store.chunks(KEY) and len(sealed) == 4
    assert store.storage.stat(sealed[-1].object_name).etag.strip('"').endswith("-2")  # parts
    for c in sealed:
        path, digest = store.fetch(KEY, c.name, tmp_path)
        assert digest == c.sha256 and read_metadata(path)["rows"] == c.rows


def test_a_zombies_incomplete_group_is_completed_and_covered(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A zombie sealed a two-configuration group past the new owner's progress for one
    configuration only, then died. The next owner resumes at that group, completes it (the
    re-seal overlaps the new owner's chunks of the other configuration) and moves on; each
    configuration's dataset still holds each of its positions once."""
    import dataclasses
    other = dataclasses.replace(CONFIG, board_type="square4x")
    assert other.key() != KEY and other.key().endswith(f"_{SCOPE}")
    store = s3_store(request)

    def feed_both(writer: ChunkWriter, positions: range, seal_after: set[int]) -> None:
        """Even positions are games of CONFIG, odd ones of ``other``: every range holds
        both, so every seal is a group of two chunks."""
        for pos in positions:
            cfg = CONFIG if pos % 2 == 0 else other
            writer.add(pos, cfg, game_rows(f"p{pos}", 2, pos, cfg), game_id=f"p{pos}")
            if pos in seal_after:
                writer.finalize()

    owner = ChunkWriter(store, "t+0", SCOPE)
    feed_both(owner, range(0, 6), {1, 5})                    # groups 0..1 and 2..5
    owner.close()
    # the zombie's group 0..7, sealed for CONFIG only before it died
    zombie_store = ChunkStore(tmp_path / "zombie")
    zombie = ChunkWriter(zombie_store, "t+0", SCOPE)
    feed_both(zombie, range(0, 8), {7})
    zombie.close()
    zombie_chunk = zombie_store.local_path(KEY, ChunkName("t+0", 0, 7))
    assert zombie_chunk is not None and store.seal(KEY, ChunkName("t+0", 0, 7), zombie_chunk)
    resumed = ChunkWriter(store, "t+0", SCOPE)
    assert resumed.next_position == 0                        # back to the incomplete group
    feed_both(resumed, range(0, 10), {9})
    resumed.close()
    assert store.chunks(other.key()) == [ChunkName("t+0", 0, 1), ChunkName("t+0", 0, 7),
                                         ChunkName("t+0", 2, 5), ChunkName("t+0", 8, 9)]
    base = f"s3://{request.getfixturevalue('s3_bucket')}/{request.getfixturevalue('s3_prefix')}"
    for cfg, parity in ((CONFIG, 0), (other, 1)):
        out = f"{base}/ds-{cfg.key()}"
        compact(store, cfg.key(), out, CompactOptions(dedup=False))
        assert dataset_keys(out, tmp_path) == Counter(
            (f"p{p}", m) for p in range(10) if p % 2 == parity for m in range(2))
