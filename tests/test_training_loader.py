"""The training loader on real published datasets, through a real torch DataLoader with
worker processes: exactly once per epoch for any worker count and rank split, seeded order,
augmentation of planes and policy together, follow mode, exact resume, the reuse limit."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from playstream.chunks import ChunkStore
from playstream.compaction import read_manifest
from playstream.dataset import RowBatch, load_npz_dataset, read_metadata
from playstream.dataset.schema import DENSE_FORMAT_VERSION
from playstream.errors import DatasetError, LoaderError
from playstream.games import get_game
from playstream.training import PlaystreamDataset, iter_batches, resolve
from playstream.training.collate import augment_dense_policy, augment_features
from playstream.training.torch import to_sparse_csr

from training_data import add_games, publish

Key = tuple[str, int]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[ChunkStore, Path]:
    """A finalizer output folder: one version of 40 random square8 games in shards of 97."""
    root = tmp_path_factory.mktemp("loader")
    store = ChunkStore(root / "chunks")
    add_games(store, "file-a+0", board_type="square8", start=0, count=40, chunk_rows=300)
    publish(store, root / "out")
    return store, root / "out"


def version_rows(out: Path, version: str | None = None) -> RowBatch:
    folder = out / (version or "current")
    manifest = json.loads((folder / "manifest.json").read_text())
    return RowBatch.concat([load_npz_dataset(folder / o["file"]).rows
                            for o in manifest["outputs"] if o["split"] == "train"])


def keys_of(rows: RowBatch) -> Counter[Key]:
    return Counter(zip(rows.game_id.tolist(), rows.move_number.tolist()))


def batch_keys(batch: dict) -> list[Key]:
    return list(zip(np.asarray(batch["game_id"]).tolist(), batch["move_number"].tolist()))


def loader_keys(ds: PlaystreamDataset, workers: int, **kw: object) -> list[Key]:
    out: list[Key] = []
    for batch in DataLoader(ds, batch_size=None, num_workers=workers, **kw):
        out += batch_keys(batch)
    return out


def dataset(out: Path, **kw: object) -> PlaystreamDataset:
    options = dict(batch_size=32, seed=7, shuffle_buffer=150, range_rows=40, with_ids=True)
    options.update(kw)
    return PlaystreamDataset(out, **options)


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_every_row_exactly_once_per_epoch(published: tuple[ChunkStore, Path],
                                          workers: int) -> None:
    _, out = published
    want = keys_of(version_rows(out))
    assert sum(want.values()) > 400 and len(resolve(out).files) >= 4
    ds = dataset(out)
    loader = DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=True,
                        persistent_workers=workers > 0)
    orders = []
    for epoch in range(2):
        ds.set_epoch(epoch)  # persistent workers read the epoch from the shared plan
        got = [k for batch in loader for k in batch_keys(batch)]
        assert Counter(got) == want
        orders.append(got)
    assert orders[0] != orders[1]


def test_two_ranks_split_the_rows_exactly(published: tuple[ChunkStore, Path]) -> None:
    _, out = published
    want = keys_of(version_rows(out))
    parts = [loader_keys(dataset(out, rank=r, world_size=2), 2) for r in range(2)]
    assert Counter(parts[0]) + Counter(parts[1]) == want
    assert not set(parts[0]) & set(parts[1]) and min(map(len, parts)) > 100


def test_same_seed_same_order_other_seed_other_order(published: tuple[ChunkStore, Path]
                                                     ) -> None:
    _, out = published
    first = loader_keys(dataset(out), 2)
    assert loader_keys(dataset(out), 2) == first
    assert loader_keys(dataset(out, seed=8), 2) != first
    # Shuffled across files, not file order: the first batch mixes several games.
    assert len({g for g, _ in first[:32]}) > 5
    ds = dataset(out)
    ds.set_epoch(1)
    assert loader_keys(ds, 2) != first


def test_batches_are_contiguous_tensors_of_the_declared_shapes(
        published: tuple[ChunkStore, Path]) -> None:
    _, out = published
    config = resolve(out).config
    rows = version_rows(out)
    by_key = {k: i for i, k in enumerate(zip(rows.game_id.tolist(),
                                             rows.move_number.tolist()))}
    for dense in (True, False):
        ds = dataset(out, dense_policy=dense)
        batch = next(iter(DataLoader(ds, batch_size=None, num_workers=1, pin_memory=True)))
        b = batch["values"].shape[0]
        assert batch["features"].shape == (b, len(config.channels), 8, 8)
        assert batch["features"].dtype == torch.float32 and batch["features"].is_contiguous()
        assert batch["globals"].shape == (b, len(config.global_names))
        assert batch["values_mp"].shape == (b, config.value_seats)
        policy = batch["policy"] if dense else to_sparse_csr(batch, 64).to_dense()
        assert policy.shape == (b, 64)
        index = [by_key[k] for k in batch_keys(batch)]
        np.testing.assert_array_equal(policy.numpy(), rows.take(index).dense_policy(64))
        np.testing.assert_array_equal(batch["features"].numpy(), rows.features[index])
        np.testing.assert_array_equal(batch["values"].numpy(), rows.values[index])


def test_a_worker_hands_a_batch_over_as_one_shared_memory_block(
        published: tuple[ChunkStore, Path]) -> None:
    """The numeric tensors of a batch from a worker are views of one shared block (one
    descriptor per batch, no copy into a file per tensor); from the main process they are
    plain memory. The numbers are the same either way."""
    _, out = published
    from_worker = next(iter(DataLoader(dataset(out), batch_size=None, num_workers=1)))
    in_process = next(iter(dataset(out)))
    numeric = [k for k, v in from_worker.items() if isinstance(v, torch.Tensor)]
    assert {"features", "policy", "values", "cursor"} <= set(numeric)
    blocks = {from_worker[k].untyped_storage().data_ptr() for k in numeric}
    assert len(blocks) == 1 and from_worker["features"].is_shared()
    assert not in_process["features"].is_shared()
    for k in numeric:
        np.testing.assert_array_equal(from_worker[k].numpy(), in_process[k].numpy())


def test_augmentation_moves_planes_and_policy_with_one_transform(
        published: tuple[ChunkStore, Path]) -> None:
    _, out = published
    rows = version_rows(out)
    by_key = {k: i for i, k in enumerate(zip(rows.game_id.tolist(),
                                             rows.move_number.tolist()))}
    sym = get_game("connect").symmetries("square8")
    used: Counter[int] = Counter()
    batches = list(DataLoader(dataset(out, augment=True), batch_size=None, num_workers=2))
    sparse = list(DataLoader(dataset(out, augment=True, dense_policy=False), batch_size=None,
                             num_workers=2))
    for batch, other in zip(batches, sparse):
        index = np.array([by_key[k] for k in batch_keys(batch)])
        stored = rows.take(index)
        dense = stored.dense_policy(64)
        for j in range(len(index)):
            # The transform of row j is the one that maps its stored planes onto the batch's.
            options = [k for k in range(sym.size) if np.array_equal(
                augment_features(stored.features[j:j + 1], sym, np.array([k]))[0],
                batch["features"][j].numpy())]
            assert options, "the planes are not a transform of the stored row"
            policies = [augment_dense_policy(dense[j:j + 1], sym, np.array([k]))[0]
                        for k in options]
            assert any(np.array_equal(p, batch["policy"][j].numpy()) for p in policies)
            used[options[0]] += 1
        # The sparse path applies the same transforms (same seed) as the dense one.
        np.testing.assert_array_equal(to_sparse_csr(other, 64).to_dense().numpy(),
                                      batch["policy"].numpy())
    assert len(used) == sym.size  # every symmetry of the group is drawn


@pytest.fixture(scope="module", params=["square8", "hexagonal"])
def both_formats(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, Path]:
    """The same rows published twice: packed planes (format 3) and dense float32 planes."""
    root = tmp_path_factory.mktemp(f"formats-{request.param}")
    store = ChunkStore(root / "chunks")
    add_games(store, "file-a+0", board_type=request.param, start=0, count=8, chunk_rows=300)
    publish(store, root / "packed")
    publish(store, root / "dense", format_version=DENSE_FORMAT_VERSION)
    return root / "packed", root / "dense"


def test_packed_planes_give_the_batches_of_dense_planes(both_formats: tuple[Path, Path]
                                                        ) -> None:
    """Unpacking, moving and collating in one pass changes nothing: every tensor of every
    augmented batch equals the one the loader builds from the dense file of the same rows,
    and the planes and policy of each row are the reference transform (`augment_features`,
    `augment_dense_policy`) of that row as the dense file stores it (no unpacking)."""
    packed, dense = both_formats
    assert read_metadata(resolve(packed).files[0].path)["format_version"] == 3
    assert read_metadata(resolve(dense).files[0].path)["format_version"] == 2
    config = resolve(dense).config
    sym = get_game(config.game).symmetries(config.board_type)
    assert sym.size == (12 if config.board_type == "hexagonal" else 8)
    for dense_policy in (True, False):
        got = {}
        for name, source in (("packed", packed), ("dense", dense)):
            ds = dataset(source, augment=True, dense_policy=dense_policy)
            loader = DataLoader(ds, batch_size=None, num_workers=2, pin_memory=True,
                                persistent_workers=True)
            got[name] = list(loader)
        assert len(got["packed"]) == len(got["dense"]) > 4
        for a, b in zip(got["packed"], got["dense"]):
            assert a.keys() == b.keys()
            assert a["features"].is_contiguous() and a["features"].dtype == torch.float32
            for key in a:
                np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]),
                                              err_msg=key)
    rows = version_rows(dense)
    by_key = {k: i for i, k in enumerate(zip(rows.game_id.tolist(),
                                             rows.move_number.tolist()))}
    used: set[int] = set()
    ds = dataset(packed, augment=True)
    for batch in DataLoader(ds, batch_size=None, num_workers=2):
        stored = rows.take([by_key[k] for k in batch_keys(batch)])
        policy = stored.dense_policy(config.policy_size)
        for j in range(len(stored)):
            options = [k for k in range(sym.size) if np.array_equal(
                augment_features(stored.features[j:j + 1], sym, np.array([k]))[0],
                batch["features"][j].numpy())]
            assert options, "the planes are not a transform of the stored row"
            assert any(np.array_equal(augment_dense_policy(policy[j:j + 1], sym,
                                                           np.array([k]))[0],
                                      batch["policy"][j].numpy()) for k in options)
            used.add(options[0])
    assert len(used) == sym.size


def test_resume_mid_epoch_is_exact(published: tuple[ChunkStore, Path]) -> None:
    _, out = published
    def by_shard(batches: list[dict]) -> dict[int, list[Key]]:
        """Each worker's batches in order (the DataLoader interleaves the workers starting
        from worker 0, so a resumed run interleaves them differently)."""
        out: dict[int, list[Key]] = {}
        for batch in batches:
            out.setdefault(int(batch["cursor"][1]), []).extend(batch_keys(batch))
        return out

    ds = dataset(out)
    ds.set_epoch(3)
    full = list(DataLoader(ds, batch_size=None, num_workers=3))
    ds = dataset(out)
    ds.set_epoch(3)
    seen: list[dict] = []
    loader = DataLoader(ds, batch_size=None, num_workers=3, prefetch_factor=4)
    for batch in ds.track(loader):
        seen.append(batch)
        if len(seen) == 7:  # the workers have prefetched well past this
            break
    state = json.loads(json.dumps(ds.state_dict()))
    del loader
    resumed = dataset(out)
    resumed.load_state_dict(state)
    rest = list(DataLoader(resumed, batch_size=None, num_workers=3))
    done = [k for b in seen + rest for k in batch_keys(b)]
    assert Counter(done) == Counter(k for b in full for k in batch_keys(b))
    assert len(set(done)) == len(done)  # nothing repeated, nothing skipped
    halves = by_shard(seen), by_shard(rest)
    assert {s: halves[0].get(s, []) + halves[1].get(s, []) for s in range(3)} == by_shard(full)
    assert len(rest) == len(full) - 7
    with pytest.raises(LoaderError, match="same num_workers"):
        again = dataset(out)
        again.load_state_dict(state)
        list(again)
    with pytest.raises(LoaderError, match="other options"):
        dataset(out, batch_size=16).load_state_dict(state)


def test_numpy_iterator_is_the_same_stream(published: tuple[ChunkStore, Path]) -> None:
    _, out = published
    got = [k for b in iter_batches(out, batch_size=32, seed=7, shuffle_buffer=150,
                                   range_rows=40, with_ids=True) for k in batch_keys(b)]
    assert got == loader_keys(dataset(out), 0)


def test_follow_switches_to_a_new_version_at_the_epoch_boundary(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    out = tmp_path / "out"
    add_games(store, "file-a+0", board_type="square8", start=0, count=20)
    publish(store, out)
    first = read_manifest(out)
    v1 = resolve(out).version
    ds = dataset(out, follow=True)
    ds.set_epoch(0)
    got: list[Key] = []
    for i, batch in enumerate(DataLoader(ds, batch_size=None, num_workers=2)):
        got += batch_keys(batch)
        if i == 1:  # the finalizer publishes while the epoch runs
            add_games(store, "file-b+0", board_type="square8", start=100, count=10)
            worker = threading.Thread(target=publish, args=(store, out))
            worker.start()
            worker.join()
    assert resolve(out).version != v1
    assert Counter(got) == keys_of(version_rows(out, v1))  # the epoch kept its version
    ds.set_epoch(1)
    second = loader_keys(ds, 2)
    assert Counter(second) == keys_of(version_rows(out))
    assert len(second) > first["totals"]["train_rows"]


def test_follow_never_reads_an_unpublished_or_damaged_version(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    out = tmp_path / "out"
    add_games(store, "file-a+0", board_type="square8", start=0, count=12)
    publish(store, out)
    current = resolve(out)
    # What a publication in progress leaves: a staging folder, and a version folder that is
    # renamed into place but not yet linked; neither is read.
    (out / ".tmp-0123").mkdir()
    (out / ".tmp-0123" / "train-00000.npz").write_bytes(b"PK\x03\x04partial")
    later = out / "29991231T000000Z-99"
    later.mkdir()
    (later / "train-00000.npz").write_bytes(b"partial")
    ds = dataset(out, follow=True)
    ds.set_epoch(1)
    assert ds.stream.snapshot == current
    assert Counter(loader_keys(ds, 2)) == keys_of(version_rows(out))
    # A file that differs from its manifest entry is refused, naming the file.
    victim = Path(current.files[0].path)
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the features array
    victim.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="does not match its manifest"):
        loader_keys(dataset(out, follow=True), 0)


def test_reuse_limit_blocks_until_self_play_produces_more(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    store = ChunkStore(tmp_path / "chunks")
    out = tmp_path / "out"
    add_games(store, "file-a+0", board_type="square8", start=0, count=20)
    publish(store, out)
    produced = sum(c["rows"] for c in read_manifest(out)["chunks"])
    ds = dataset(out, follow=True, reuse_limit=0.5, poll_seconds=0.05)
    got: list[int] = []
    done = threading.Event()

    def train() -> None:
        for batch in DataLoader(ds, batch_size=None, num_workers=0):
            got.append(len(batch["values"]))
        done.set()

    caplog.set_level(logging.WARNING, logger="playstream.training")
    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while "reuse limit reached" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert "reuse limit reached" in caplog.text and not done.is_set()
    assert sum(got) <= 0.5 * produced < sum(got) + 32  # blocked at the budget
    blocked_at = sum(got)
    add_games(store, "file-b+0", board_type="square8", start=100, count=40)
    publish(store, out)
    assert done.wait(30), "the loader did not resume after new rows were published"
    assert "reuse limit released" in caplog.text
    assert sum(got) > blocked_at and sum(got) == produced  # epoch 0: the first version


def test_even_batches_give_every_rank_the_same_number_of_full_steps(
        published: tuple[ChunkStore, Path]) -> None:
    _, out = published
    want = keys_of(version_rows(out))

    def per_rank(**kw: object) -> list[list[dict]]:
        return [list(DataLoader(dataset(out, rank=r, world_size=2, range_rows=25, **kw),
                                batch_size=None, num_workers=3)) for r in range(2)]

    uneven = per_rank()
    assert len(uneven[0]) != len(uneven[1])  # what data-parallel training would hang on
    even = per_rank(even_batches=True)
    assert len(even[0]) == len(even[1]) > 0
    assert all(len(b["values"]) == 32 for rank in even for b in rank)
    keys = [k for rank in even for b in rank for k in batch_keys(b)]
    assert len(set(keys)) == len(keys) and set(keys) <= set(want)
    # Only the rows past the poorest shard's last full batch are left out.
    assert sum(want.values()) - len(keys) < 6 * (25 + 32)


def test_follow_every_k_steps_switches_version_within_a_pass(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    out = tmp_path / "out"
    add_games(store, "file-a+0", board_type="square8", start=0, count=20)
    publish(store, out)
    v1 = keys_of(version_rows(out))
    ds = dataset(out, follow=True, epoch_batches=5)
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    ds.set_epoch(0)
    first = [batch_keys(b) for b in loader]
    assert len(first) == 5 and all(len(b) == 32 for b in first)
    flat = [k for b in first for k in b]
    assert len(set(flat)) == len(flat) and set(flat) <= set(v1) and len(flat) < sum(v1.values())
    add_games(store, "file-b+0", board_type="square8", start=100, count=20)
    publish(store, out)
    v2 = keys_of(version_rows(out))
    ds.set_epoch(1)  # after 5 steps, not after a whole pass over the first version
    assert ds.stream.snapshot.version == resolve(out).version
    second = [k for b in loader for k in batch_keys(b)]
    assert len(second) == 5 * 32 and set(second) <= set(v2)
    assert set(second) - set(v1)  # rows only the new version holds
