"""Publishing: versions behind an atomic ``current`` link, the manifest, the output lock, and
failures that must leave the previous dataset byte-identical."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from playstream.chunks import ChunkStore
from playstream.chunks.writer import file_sha256
from playstream.compaction import CompactOptions, KataGoWindow, compact, read_manifest
from playstream.dataset import NPZDatasetWriter, RowBatch, read_metadata
from playstream.errors import DatasetError
from test_compaction import CONFIG, KEY, seal


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    store = ChunkStore(tmp_path / "chunks")
    seal(store, "a+0", [(f"a{i}", 4) for i in range(6)], max_rows=9)
    seal(store, "b+0", [(f"b{i}", 3) for i in range(3)], seed=40)
    return store


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every file's bytes and every link's target under ``folder``."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        if p.is_symlink():
            out[key] = os.readlink(p)
        elif p.is_file():
            out[key] = p.read_bytes()
    return out


def test_versions_behind_the_current_link(store: ChunkStore, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    options = CompactOptions(keep_versions=2, val_fraction=0.25)
    results = [compact(store, KEY, out, options) for _ in range(3)]
    versions = sorted(p.name for p in out.iterdir() if not p.name.startswith((".", "current")))
    assert len(versions) == 2 and [v.split("-")[1] for v in versions] == ["2", "3"]
    assert os.readlink(out / "current") == versions[-1]
    assert results[-1].manifest == out / versions[-1] / "manifest.json"
    assert [p.name for p in results[-1].outputs] == ["train.npz", "val.npz"]
    assert all(p.parent == out / versions[-1] for p in results[-1].outputs)
    assert sorted(p.name for p in (out / "current").iterdir()) == \
        ["manifest.json", "train.npz", "val.npz"]
    assert read_manifest(out) == read_manifest(out / versions[-1])
    assert not [p for p in out.iterdir() if p.name.startswith((".tmp-", ".current-"))]


def test_the_manifest_describes_chunks_and_outputs(store: ChunkStore, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    window = KataGoWindow(min_rows=20)
    result = compact(store, KEY, out, CompactOptions(window=window, seed=5, shard_rows=10,
                                                     shuffle=True))
    manifest = read_manifest(out)
    assert (manifest["format"], manifest["version"]) == ("playstream-manifest", 1)
    assert manifest["config"] == CONFIG.to_metadata() and manifest["config_key"] == KEY
    assert manifest["options"]["window"] == repr(window) and manifest["options"]["seed"] == 5
    assert manifest["options"]["shard_rows"] == 10 and manifest["options"]["dedup"] is True
    sealed = store.sealed(KEY)
    assert sorted(c["file"] for c in manifest["chunks"]) == sorted(p.name for _, p in sealed)
    for name, path in sealed:
        entry = next(c for c in manifest["chunks"] if c["file"] == path.name)
        assert entry["sha256"] == file_sha256(path)
        assert (entry["config_key"], entry["stream"], entry["first"], entry["last"]) == \
            (KEY, name.stream, name.first, name.last)
        assert entry["rows"] == read_metadata(path)["rows"]
    used = sum(c["rows_used"] for c in manifest["chunks"])
    assert used == result.rows == window.size(33) == manifest["totals"]["rows"] == 24
    # Oldest first: a0-a2 (12 rows), a3-a5 (12), b0-b2 (9); the newest 24 rows are b0-b2,
    # a3-a5 and the last 3 rows of a2.
    assert [c["rows_used"] for c in manifest["chunks"]] == [3, 12, 9]
    assert [o["rows"] for o in manifest["outputs"]] == [10, 10, 4]
    for entry, path in zip(manifest["outputs"], result.outputs):
        assert entry["file"] == path.name and entry["split"] == "train"
        assert entry["sha256"] == file_sha256(path) and entry["bytes"] == path.stat().st_size
        assert entry["games"] == read_metadata(path)["games"]
    assert manifest["totals"]["games"] == result.games == 7
    assert manifest["totals"]["chunks"] == len(sealed) and manifest["quarantined"] == []
    assert result.bytes_written == sum(p.stat().st_size for p in result.outputs) + \
        result.manifest.stat().st_size


def test_a_single_file_carries_its_manifest(store: ChunkStore, tmp_path: Path) -> None:
    out = tmp_path / "data" / "train.npz"
    result = compact(store, KEY, out)
    assert result.outputs == [out]
    assert result.manifest == tmp_path / "data" / "train.npz.manifest.json"
    sidecar = read_manifest(out)
    embedded = read_metadata(out)["extra"]["manifest"]
    assert embedded["chunks"] == sidecar["chunks"] and embedded["totals"]["rows"] == 33
    assert embedded["outputs"] == [{**sidecar["outputs"][0], "sha256": None, "bytes": None}]
    assert sidecar["outputs"][0]["sha256"] == file_sha256(out)
    assert sorted(p.name for p in out.parent.iterdir()) == \
        ["train.npz", "train.npz.lock", "train.npz.manifest.json"]


LOCK_HOLDER = """
import fcntl, sys, time
fh = open(sys.argv[1], "a+")
fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
fh.write("4242\\n"); fh.flush()
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("name, lock", [("ds", "ds/.lock"), ("ds.npz", "ds.npz.lock")])
def test_a_second_finalizer_is_refused_while_the_lock_is_held(
        store: ChunkStore, tmp_path: Path, name: str, lock: str) -> None:
    out, lock_path = tmp_path / name, tmp_path / lock
    lock_path.parent.mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(lock_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(DatasetError, match="another finalizer is publishing") as info:
            compact(store, KEY, out)
        assert str(lock_path) in str(info.value) and "pid 4242" in str(info.value)
        assert info.value.check == "lock" and info.value.path == str(out)
    finally:
        holder.communicate("done\n", timeout=10)
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]  # nothing was staged
    compact(store, KEY, out)  # the lock is free again
    assert read_manifest(out)["totals"]["rows"] == 33


def fail_on_second_write(monkeypatch: pytest.MonkeyPatch) -> None:
    real = NPZDatasetWriter.write
    calls = []

    def write(self: NPZDatasetWriter, batch: RowBatch) -> None:
        calls.append(len(batch))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, batch)

    monkeypatch.setattr(NPZDatasetWriter, "write", write)


@pytest.mark.parametrize("options", [CompactOptions(shard_rows=5),
                                     CompactOptions(shuffle=True, val_fraction=0.3,
                                                    memory_budget_bytes=1 << 20)])
def test_a_full_disk_leaves_the_published_directory_untouched(
        store: ChunkStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        options: CompactOptions) -> None:
    out = tmp_path / "ds"
    compact(store, KEY, out)
    before = snapshot(out)
    seal(store, "c+0", [("c0", 5)], seed=90)  # new data, so the next version would differ
    fail_on_second_write(monkeypatch)
    with pytest.raises(DatasetError, match="No space left on device") as info:
        compact(store, KEY, out, options)
    assert info.value.check == "publish" and info.value.path == str(out)
    assert snapshot(out) == before
    assert read_manifest(out)["totals"]["rows"] == 33
    monkeypatch.undo()
    assert compact(store, KEY, out, options).rows == 38


def test_a_full_disk_leaves_the_published_file_untouched(
        store: ChunkStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ds.npz"
    compact(store, KEY, out, CompactOptions(memory_budget_bytes=1 << 20))
    before = snapshot(tmp_path)
    seal(store, "c+0", [(f"c{i}", 500) for i in range(3)], seed=90)  # several row blocks
    fail_on_second_write(monkeypatch)
    with pytest.raises(DatasetError, match="nothing was published: No space left on device"):
        compact(store, KEY, out, CompactOptions(memory_budget_bytes=1 << 20))
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("chunks")} == \
        {k: v for k, v in before.items() if not k.startswith("chunks")}


def test_leftovers_of_a_crashed_run_are_swept(store: ChunkStore, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    compact(store, KEY, out)
    (out / ".tmp-0123abcd" / ".work").mkdir(parents=True)
    (out / ".tmp-0123abcd" / "train.npz").write_bytes(b"partial")
    os.symlink("nowhere", out / ".current-0123abcd")
    compact(store, KEY, out)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".lock"]


def test_read_manifest_refuses_what_is_not_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no manifest") as info:
        read_manifest(tmp_path / "missing")
    assert info.value.check == "manifest"
    (tmp_path / "x.npz.manifest.json").write_text('{"format": "other", "version": 1}')
    with pytest.raises(DatasetError, match="not a playstream-manifest version 1 manifest"):
        read_manifest(tmp_path / "x.npz")
    (tmp_path / "d").mkdir()
    os.symlink("../../etc", tmp_path / "d" / "current")
    with pytest.raises(DatasetError, match="not a version folder"):
        read_manifest(tmp_path / "d")
    (tmp_path / "d" / "current").unlink()
    (tmp_path / "d" / "manifest.json").write_text("[1, 2")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_manifest(tmp_path / "d")
