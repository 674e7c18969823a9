"""The training loader on datasets published to a real S3Proxy (tests/s3_fixtures.py): every
row exactly once through DataLoader workers, the same tensors as the same dataset published
locally, a local cache keyed by sha256 that is filled once and survives a new loader, a damaged
cache entry fetched again, a tampered object refused, follow mode through the ``current``
object, eviction beyond the cache bound, resume from the cache, and one download of a file
that four processes ask for at once."""
from __future__ import annotations

import hashlib
import multiprocessing
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from playstream.chunks import ChunkStore
from playstream.compaction import read_manifest
from playstream.errors import DatasetError, LoaderError
from playstream.storage import open_storage
from playstream.training import PlaystreamDataset, resolve
from playstream.training.cache import DatasetCache

from training_data import add_games, publish
from test_training_loader import Key, batch_keys, keys_of, version_rows


@pytest.fixture
def s3_out(s3_env: dict[str, str], s3_bucket: str, s3_prefix: str) -> str:
    return f"s3://{s3_bucket}/{s3_prefix}/ds"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def loader(out: str, cache: Path, **kw: object) -> PlaystreamDataset:
    options = dict(batch_size=32, seed=3, shuffle_buffer=150, range_rows=40, with_ids=True,
                   cache_dir=str(cache))
    options.update(kw)
    return PlaystreamDataset(out, **options)


def read_epoch(ds: PlaystreamDataset, workers: int) -> tuple[list[Key], dict[Key, np.ndarray]]:
    keys: list[Key] = []
    features: dict[Key, np.ndarray] = {}
    for batch in DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=True):
        for key, planes in zip(batch_keys(batch), batch["features"].numpy()):
            keys.append(key)
            features[key] = planes
    return keys, features


def test_loader_reads_an_s3_dataset_through_a_local_cache(tmp_path: Path, s3_out: str) -> None:
    store = ChunkStore(tmp_path / "chunks")
    add_games(store, "file-a+0", board_type="square8", start=0, count=30, chunk_rows=300)
    publish(store, s3_out)
    publish(store, tmp_path / "local")  # the same chunks, published to a folder
    local = version_rows(tmp_path / "local")
    want = keys_of(local)
    assert sum(want.values()) > 300

    snapshot = resolve(s3_out)
    assert len(snapshot.files) >= 3 and all(f.path.startswith(s3_out) for f in snapshot.files)
    cache = tmp_path / "cache"
    keys, features = read_epoch(loader(s3_out, cache), workers=2)
    assert Counter(keys) == want
    # The tensors are the rows of the locally published copy (same chunks, same encoder).
    by_key = {k: i for i, k in enumerate(zip(local.game_id.tolist(),
                                               local.move_number.tolist()))}
    for key, planes in features.items():
        np.testing.assert_array_equal(planes, local.features[by_key[key]])
    # One verified copy per shard, named by its manifest sha256.
    shas = {f.sha256 for f in snapshot.files}
    cached = {p.name[:-4]: p for p in cache.glob("*.npz")}
    assert set(cached) == shas
    assert all(sha256_of(p) == sha for sha, p in cached.items())
    inodes = {p.stat().st_ino for p in cached.values()}
    # A second loader (another run) reads the cache, downloading nothing again.
    keys, _ = read_epoch(loader(s3_out, cache, seed=4), workers=1)
    assert Counter(keys) == want
    assert {p.stat().st_ino for p in cache.glob("*.npz")} == inodes


def test_a_damaged_cache_entry_is_fetched_again_and_a_tampered_object_is_refused(
        tmp_path: Path, s3_out: str) -> None:
    store = ChunkStore(tmp_path / "chunks")
    add_games(store, "file-a+0", board_type="square8", start=0, count=12)
    publish(store, s3_out)
    cache = tmp_path / "cache"
    keys, _ = read_epoch(loader(s3_out, cache), workers=0)
    want = Counter(keys)
    victim = next(cache.glob("*.npz"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0xFF
    victim.write_bytes(bytes(data))
    keys, _ = read_epoch(loader(s3_out, cache), workers=0)
    assert Counter(keys) == want
    assert sha256_of(victim) == victim.name[:-4]

    # The object itself differs from its manifest entry: refused, naming it; nothing cached.
    snapshot = resolve(s3_out)
    shard = snapshot.files[0]
    storage = open_storage(s3_out)
    name = shard.path[len(s3_out) + 1:]
    body = bytearray(storage.read(name))
    body[len(body) // 3] ^= 0xFF
    storage.write(name, bytes(body))
    fresh = tmp_path / "fresh-cache"
    with pytest.raises(DatasetError, match="does not match its manifest") as err:
        read_epoch(loader(s3_out, fresh, shuffle=False), workers=0)
    assert err.value.path == shard.path
    assert not (fresh / f"{shard.sha256}.npz").exists()
    assert not list(fresh.glob("*.partial"))


def test_follow_on_s3_switches_version_evicts_beyond_the_bound_and_resumes_from_cache(
        tmp_path: Path, s3_out: str) -> None:
    store = ChunkStore(tmp_path / "chunks")
    add_games(store, "file-a+0", board_type="square8", start=0, count=15)
    publish(store, s3_out)
    publish(store, tmp_path / "local")  # the same versions, published to a folder
    first = resolve(s3_out)
    cache = tmp_path / "cache"
    ds = loader(s3_out, cache, follow=True, cache_bytes=0)
    ds.set_epoch(0)
    keys, _ = read_epoch(ds, workers=2)
    assert Counter(keys) == keys_of(version_rows(tmp_path / "local"))

    add_games(store, "file-b+0", board_type="square8", start=100, count=10)
    publish(store, s3_out)
    publish(store, tmp_path / "local")
    second = resolve(s3_out)
    assert second.version != first.version and second.rows > first.rows
    ds.set_epoch(1)
    assert ds.stream.snapshot.version == second.version
    # cache_bytes=0: every entry the new snapshot does not use is evicted at the switch.
    assert {p.name[:-4] for p in cache.glob("*.npz")} <= {f.sha256 for f in second.files}
    got: list[Key] = []
    state = None
    trained = 0
    for batch in ds.track(DataLoader(ds, batch_size=None, num_workers=0)):
        got += batch_keys(batch)
        trained += 1
        if trained == 3:
            state = ds.state_dict()
            break
    assert state is not None
    # The shards the first batches fetched vanish from the store: a resume with an empty
    # cache is refused, naming one; with the cache that holds them it reads those from there
    # and the others from the store, the rest of the epoch exactly.
    storage = open_storage(s3_out)
    gone = [f for f in second.files if (cache / f"{f.sha256}.npz").is_file()]
    assert gone and len(gone) < len(second.files)
    for shard in gone:
        storage.delete(shard.path[len(s3_out) + 1:])
    with pytest.raises(LoaderError, match="is gone") as err:
        loader(s3_out, tmp_path / "empty", follow=True).load_state_dict(state)
    assert err.value.context["path"] == gone[0].path
    resumed = loader(s3_out, cache, follow=True, cache_bytes=0)
    resumed.load_state_dict(state)
    rest = [k for b in DataLoader(resumed, batch_size=None, num_workers=0) for k in batch_keys(b)]
    assert len(got) == 3 * 32 and rest
    assert Counter(got + rest) == keys_of(version_rows(tmp_path / "local"))
    assert read_manifest(s3_out)["totals"]["train_rows"] == second.rows


def _fetch(args: tuple[str, str, str]) -> bool:
    url, sha, folder = args
    return DatasetCache(folder).fetch(url, sha)[1]


def test_concurrent_fetches_of_one_file_download_it_once(tmp_path: Path, s3_out: str) -> None:
    body = np.random.default_rng(0).bytes(24 << 20)  # long enough for the fetches to overlap
    sha = hashlib.sha256(body).hexdigest()
    open_storage(s3_out).write("big.npz", body)
    url = f"{s3_out}/big.npz"
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        fresh = pool.map(_fetch, [(url, sha, str(cache))] * 4)
    assert fresh.count(True) == 1
    assert sha256_of(cache / f"{sha}.npz") == sha
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [f"{sha}.npz"]
