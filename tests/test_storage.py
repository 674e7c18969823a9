"""The storage port's contract, run against both implementations: LocalStorage on a temp folder
and S3Storage on a real S3Proxy (started by deploy/s3/s3.sh, tests/s3_fixtures.py). No mocks:
every assertion is on bytes read back from the store."""
from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from playstream.errors import PlaystreamError
from playstream.storage import (InvalidObjectNameError, LocalStorage, ObjectNotFoundError,
                                Storage, StorageError, open_storage)
from playstream.storage.locals3 import LocalS3

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def make_s3(bucket: str, prefix: str, **options: Any) -> Storage:
    from playstream.storage.s3 import S3Storage
    return S3Storage(bucket, prefix, **options)


@pytest.fixture(params=["local", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(kind: str, tmp_path: Path, request: pytest.FixtureRequest
                  ) -> Callable[..., Storage]:
    """Build a store of this test's kind; options apply to S3 (part size, threshold, ...)."""
    if kind == "local":
        return lambda **options: LocalStorage(tmp_path / "store")
    request.getfixturevalue("s3_env")
    bucket = request.getfixturevalue("s3_bucket")
    prefix = request.getfixturevalue("s3_prefix")
    return lambda **options: make_s3(bucket, prefix, **options)


@pytest.fixture
def store(store_factory: Callable[..., Storage]) -> Storage:
    return store_factory()


# ---------------------------------------------------------------------------------- basics
def test_store_implements_the_port(store: Storage) -> None:
    assert isinstance(store, Storage)


def test_list_read_and_ranges(store: Storage) -> None:
    payloads = {f"chunks/g{i}+{i:020d}+{i + 9:020d}.npz": os.urandom(1000 + i) for i in range(5)}
    payloads["datasets/v1/manifest.json"] = b'{"v": 1}'
    payloads["chunks2/other.npz"] = b"x"
    for name, data in payloads.items():
        assert store.create_if_absent(name, data) is True

    listed = list(store.list("chunks/"))
    assert [o.name for o in listed] == sorted(n for n in payloads if n.startswith("chunks/"))
    assert all(o.size == len(payloads[o.name]) for o in listed)
    assert all(o.mtime > 0 for o in listed)
    # a plain string prefix, as in S3: 'chunks' also matches 'chunks2/...'
    assert [o.name for o in store.list("chunks")] == sorted(
        n for n in payloads if n.startswith("chunks"))
    assert [o.name for o in store.list("chunks/g3+")] == ["chunks/g3+00000000000000000003+"
                                                          "00000000000000000012.npz"]
    assert [o.name for o in store.list()] == sorted(payloads)
    assert list(store.list("nothing/here")) == []

    name, data = "chunks/g2+00000000000000000002+00000000000000000011.npz", payloads[
        "chunks/g2+00000000000000000002+00000000000000000011.npz"]
    assert store.read(name) == data
    assert store.read_range(name, 0, 10) == data[:10]
    assert store.read_range(name, 500, 123) == data[500:623]
    assert store.read_range(name, len(data) - 5, 100) == data[-5:]   # clipped at the end
    assert store.read_range(name, len(data), 10) == b""
    assert store.read_range(name, len(data) + 100, 10) == b""
    assert store.read_range(name, 7, 0) == b""
    info = store.stat(name)
    assert (info.name, info.size) == (name, len(data))
    assert store.exists(name) and not store.exists("chunks/absent.npz")


def test_empty_object(store: Storage) -> None:
    assert store.create_if_absent("e/empty", b"") is True
    assert store.read("e/empty") == b""
    assert store.stat("e/empty").size == 0
    assert [o.size for o in store.list("e/")] == [0]
    with store.open_read("e/empty") as f:
        assert f.read() == b""


def test_missing_object_is_object_not_found(store: Storage) -> None:
    for op in (lambda: store.read("no/such"), lambda: store.read_range("no/such", 0, 5),
               lambda: store.open_read("no/such"), lambda: store.stat("no/such")):
        with pytest.raises(ObjectNotFoundError) as info:
            op()
        assert isinstance(info.value, StorageError)
        assert info.value.name == "no/such"
        assert "no/such" in str(info.value)
        assert info.value.url == store.url("no/such")


def test_create_if_absent_twice_keeps_the_first(store: Storage) -> None:
    assert store.create_if_absent("seal/a.npz", b"first content") is True
    assert store.create_if_absent("seal/a.npz", b"second, different content") is False
    assert store.read("seal/a.npz") == b"first content"
    assert [o.name for o in store.list("seal/")] == ["seal/a.npz"]


def test_create_if_absent_from_a_path(store: Storage, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    assert store.create_if_absent("p/src.bin", src) is True
    other = tmp_path / "other.bin"
    other.write_bytes(b"other")
    assert store.create_if_absent("p/src.bin", other) is False
    assert sha256(store.read("p/src.bin")) == sha256(data)
    with pytest.raises(TypeError):
        store.create_if_absent("p/str", "a str is neither content nor a path")  # type: ignore
    with pytest.raises(StorageError, match="does not exist"):
        store.create_if_absent("p/missing", tmp_path / "missing.bin")
    assert not store.exists("p/missing")


@pytest.mark.parametrize("threads", [2, 8])
def test_concurrent_create_if_absent_exactly_one_wins(store: Storage, threads: int) -> None:
    rounds = 10 if threads == 2 else 4
    for r in range(rounds):
        name = f"race/{threads}-{r}.npz"
        payloads = [bytes([i]) * 200_000 + os.urandom(16) for i in range(threads)]
        barrier = threading.Barrier(threads)
        results: list[Any] = [None] * threads

        def attempt(i: int) -> None:
            barrier.wait()
            try:
                results[i] = store.create_if_absent(name, payloads[i])
            except BaseException as err:  # noqa: BLE001 - reported below
                results[i] = err

        workers = [threading.Thread(target=attempt, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert all(isinstance(x, bool) for x in results), results
        winners = [i for i, won in enumerate(results) if won]
        assert len(winners) == 1, f"round {r}: {results}"
        assert sha256(store.read(name)) == sha256(payloads[winners[0]])


def test_write_replaces_whole(store: Storage, tmp_path: Path) -> None:
    store.write("cur/pointer", b"version-1")
    assert store.read("cur/pointer") == b"version-1"
    store.write("cur/pointer", b"v2")
    assert store.read("cur/pointer") == b"v2"
    src = tmp_path / "v3"
    src.write_bytes(b"version three from a file")
    store.write("cur/pointer", src)
    assert store.read("cur/pointer") == b"version three from a file"
    assert store.create_if_absent("cur/pointer", b"no") is False
    assert [o.name for o in store.list("cur/")] == ["cur/pointer"]


def test_delete(store: Storage) -> None:
    store.write("d/x", b"1")
    store.write("d/y", b"2")
    store.delete("d/x")
    assert not store.exists("d/x")
    with pytest.raises(ObjectNotFoundError):
        store.read("d/x")
    store.delete("d/x")            # idempotent
    store.delete("d/never")
    assert [o.name for o in store.list("d/")] == ["d/y"]
    assert store.create_if_absent("d/x", b"again") is True   # a deleted name can be sealed anew
    assert store.read("d/x") == b"again"


BAD_NAMES = ["", "/abs/name", "a/../b", "..", "./a", "a//b", "a/", "a b", "a\\b", "a\nb",
             "ünï", "a/.playstream-tmp-123", "x" * 300, "a?b", "a*"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_names_are_rejected_naming_the_name(store: Storage, bad: str) -> None:
    ops: list[tuple[str, Callable[[], object]]] = [
        ("read", lambda: store.read(bad)),
        ("read_range", lambda: store.read_range(bad, 0, 1)),
        ("open_read", lambda: store.open_read(bad)),
        ("create_if_absent", lambda: store.create_if_absent(bad, b"x")),
        ("write", lambda: store.write(bad, b"x")),
        ("delete", lambda: store.delete(bad)),
        ("exists", lambda: store.exists(bad)),
        ("stat", lambda: store.stat(bad)),
        ("url", lambda: store.url(bad)),
    ]
    for op, call in ops:
        with pytest.raises(InvalidObjectNameError) as info:
            call()
        err = info.value
        assert isinstance(err, StorageError) and isinstance(err, PlaystreamError), op
        shown = bad if bad else "''"
        if len(bad) < 100:
            assert err.name == shown, op
            assert shown in str(err), op
    assert list(store.list()) == []     # nothing was created under any spelling


def test_bad_list_prefixes_are_rejected(store: Storage) -> None:
    for bad in ["/a", "a/../", "a//", "a b", "../x"]:
        with pytest.raises(InvalidObjectNameError) as info:
            list(store.list(bad))
        assert bad in str(info.value)


# ---------------------------------------------------------------------------------- open_read
def npz_bytes(rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    arrays = {"planes": rng.integers(0, 2, size=(300, 2, 6, 7), dtype=np.uint8),
              "policy": rng.random((300, 7), dtype=np.float32),
              "value": rng.standard_normal(300).astype(np.float32),
              "noise": rng.integers(0, 256, size=600_000, dtype=np.uint8)}  # incompressible
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue(), arrays


def test_open_read_works_with_np_load_and_zipfile(store_factory: Callable[..., Storage]) -> None:
    store = store_factory(read_ahead=64 * 1024)   # small read-ahead: many ranged reads on S3
    rng = np.random.default_rng(7)
    data, arrays = npz_bytes(rng)
    assert len(data) > 8 * 64 * 1024
    assert store.create_if_absent("ds/shard-0.npz", data)

    with store.open_read("ds/shard-0.npz") as f:
        with np.load(f, allow_pickle=False) as npz:
            assert sorted(npz.files) == sorted(arrays)
            for key, want in arrays.items():
                np.testing.assert_array_equal(npz[key], want)

    with store.open_read("ds/shard-0.npz") as f:
        with zipfile.ZipFile(f) as zf:
            assert zf.testzip() is None
            want_zip = zipfile.ZipFile(io.BytesIO(data))
            assert zf.namelist() == want_zip.namelist()
            for member in zf.namelist():
                assert sha256(zf.read(member)) == sha256(want_zip.read(member))

    one = io.BytesIO()
    np.save(one, arrays["policy"], allow_pickle=False)
    store.write("ds/policy.npy", one.getvalue())
    with store.open_read("ds/policy.npy") as f:
        np.testing.assert_array_equal(np.load(f, allow_pickle=False), arrays["policy"])


def test_open_read_seeks_like_a_file(store_factory: Callable[..., Storage]) -> None:
    store = store_factory(read_ahead=32 * 1024)
    data = os.urandom(500_000)
    store.write("seek/blob", data)
    rng = random.Random(3)
    with store.open_read("seek/blob") as f:
        assert f.seekable() and f.readable()
        assert f.seek(0, os.SEEK_END) == len(data)
        assert f.read(10) == b""
        for _ in range(60):
            pos = rng.randrange(0, len(data) + 10)
            n = rng.choice([0, 1, 17, 4096, 100_000, 600_000])
            whence = rng.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END])
            if whence == os.SEEK_SET:
                assert f.seek(pos) == pos
            elif whence == os.SEEK_CUR:
                delta = pos - f.tell()
                assert f.seek(delta, os.SEEK_CUR) == pos
            else:
                assert f.seek(pos - len(data), os.SEEK_END) == pos
            assert f.tell() == pos
            expected = data[pos:pos + n]
            assert f.read(n) == expected
            assert f.tell() == pos + len(expected)
        f.seek(1000)
        assert f.read() == data[1000:]


def test_open_read_never_mixes_versions(store_factory: Callable[..., Storage]) -> None:
    """Replacing an object while a reader has it open: the reader goes on seeing the version
    it opened (local: the open inode) or fails with StorageError (S3: If-Match), never a mix."""
    store = store_factory(read_ahead=16 * 1024)
    old, new = b"A" * 200_000, b"B" * 200_000
    store.write("v/obj", old)
    with store.open_read("v/obj") as f:
        head = f.read(1000)
        store.write("v/obj", new)
        try:
            rest = f.read()
        except StorageError as err:
            assert "replaced" in str(err)
        else:
            assert head + rest == old
    assert store.read("v/obj") == new


# ---------------------------------------------------------------------------------- large files
def big_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, MiB))
            f.write(block)
            left -= len(block)
    return path


def test_multipart_upload_round_trips(store_factory: Callable[..., Storage], kind: str,
                                      tmp_path: Path) -> None:
    store = store_factory(multipart_threshold=1 * MiB, part_size=5 * MiB)
    src = big_file(tmp_path / "big.npz", 11 * MiB + 12345)
    assert store.create_if_absent("big/chunk.npz", src) is True
    info = store.stat("big/chunk.npz")
    assert info.size == src.stat().st_size
    if kind == "s3":
        assert info.etag is not None and info.etag.strip('"').endswith("-3"), info.etag
    assert sha256(store.read("big/chunk.npz")) == file_sha256(src)
    with store.open_read("big/chunk.npz") as f:
        f.seek(6 * MiB - 10)
        assert f.read(20) == src.read_bytes()[6 * MiB - 10:6 * MiB + 10]

    other = big_file(tmp_path / "other.npz", 6 * MiB)
    assert store.create_if_absent("big/chunk.npz", other) is False
    assert sha256(store.read("big/chunk.npz")) == file_sha256(src)
    store.write("big/chunk.npz", other)                       # multipart replace
    assert sha256(store.read("big/chunk.npz")) == file_sha256(other)
    # bytes above the threshold go in parts too
    data = os.urandom(7 * MiB)
    store.write("big/from-bytes", data)
    assert sha256(store.read("big/from-bytes")) == sha256(data)


def _open_uploads(s3: Any) -> list[str]:
    resp = s3._client.list_multipart_uploads(Bucket=s3.bucket, Prefix=s3.prefix)
    return [u["Key"] for u in resp.get("Uploads", [])]


def test_s3_concurrent_multipart_seals_one_wins_and_losers_are_aborted(
        s3_env: dict[str, str], s3_bucket: str, s3_prefix: str, tmp_path: Path) -> None:
    stores = [make_s3(s3_bucket, s3_prefix, multipart_threshold=1 * MiB, part_size=5 * MiB)
              for _ in range(3)]
    files = [big_file(tmp_path / f"f{i}", 6 * MiB + i) for i in range(3)]
    barrier = threading.Barrier(3)
    results: list[Any] = [None] * 3

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            results[i] = stores[i].create_if_absent("mp/race.npz", files[i])
        except BaseException as err:  # noqa: BLE001
            results[i] = err

    workers = [threading.Thread(target=attempt, args=(i,)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(map(repr, results)) == ["False", "False", "True"], results
    winner = results.index(True)
    assert sha256(stores[0].read("mp/race.npz")) == file_sha256(files[winner])
    assert _open_uploads(stores[0]) == []


def test_s3_conditional_complete_refuses_an_existing_key(
        s3_env: dict[str, str], s3_bucket: str, s3_prefix: str, tmp_path: Path) -> None:
    """The server-side check alone (no early HEAD): CompleteMultipartUpload with
    If-None-Match: * over an existing key answers 412 and the upload is aborted."""
    store: Any = make_s3(s3_bucket, s3_prefix, multipart_threshold=1 * MiB, part_size=5 * MiB)
    assert store.create_if_absent("mp/exists", b"small first")
    src = big_file(tmp_path / "f", 6 * MiB)
    assert store._multipart("mp/exists", store._key("mp/exists"), src, src.stat().st_size,
                            "create_if_absent", True) is False
    assert store.read("mp/exists") == b"small first"
    assert _open_uploads(store) == []


def test_s3_failed_multipart_upload_is_aborted(s3_env: dict[str, str], s3_bucket: str,
                                               s3_prefix: str, tmp_path: Path) -> None:
    """A failure after the first part (injected into the real client) leaves no open upload
    and no object."""
    store: Any = make_s3(s3_bucket, s3_prefix, multipart_threshold=1 * MiB, part_size=5 * MiB)
    real_upload_part = store._client.upload_part
    calls = {"n": 0}

    def failing_upload_part(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk went away while reading part 2")
        return real_upload_part(**kwargs)

    store._client.upload_part = failing_upload_part
    src = big_file(tmp_path / "f", 12 * MiB)
    with pytest.raises(OSError, match="part 2"):
        store.create_if_absent("mp/failed", src)
    assert calls["n"] == 2
    assert _open_uploads(store) == []
    assert not store.exists("mp/failed")


# ---------------------------------------------------------------------------------- S3 specifics
def test_s3_endpoint_and_credentials_come_from_aws_env(s3_env: dict[str, str], s3_bucket: str,
                                                       s3_prefix: str) -> None:
    store: Any = open_storage(f"s3://{s3_bucket}/{s3_prefix}/sub")
    assert store.endpoint == s3_env["AWS_ENDPOINT_URL"]
    assert s3_env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert store.location == f"s3://{s3_bucket}/{s3_prefix}/sub"
    assert store.url("a/b.npz") == f"s3://{s3_bucket}/{s3_prefix}/sub/a/b.npz"
    store.write("a/b.npz", b"hello")
    assert open_storage(store.location).read("a/b.npz") == b"hello"


def test_s3_server_honours_conditional_writes(s3_env: dict[str, str], s3_bucket: str,
                                              s3_prefix: str) -> None:
    store: Any = make_s3(s3_bucket, s3_prefix)
    store.verify_conditional_writes()
    assert list(store.list()) == []     # the probe cleaned up after itself


@pytest.mark.parametrize("which", ["secret", "key_id"])
def test_s3_wrong_credentials_are_a_storage_error(s3_env: dict[str, str], s3_bucket: str,
                                                  s3_prefix: str, which: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if which == "secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    store: Any = make_s3(s3_bucket, s3_prefix, max_attempts=1)
    endpoint = s3_env["AWS_ENDPOINT_URL"]
    calls: list[tuple[str, Callable[[], object]]] = [
        ("list", lambda: list(store.list())), ("read", lambda: store.read("a")),
        ("exists", lambda: store.exists("a")), ("write", lambda: store.write("a", b"x")),
        ("create_if_absent", lambda: store.create_if_absent("a", b"x")),
        ("open_read", lambda: store.open_read("a"))]
    for op, call in calls:
        with pytest.raises(StorageError) as info:
            call()
        err = info.value
        assert type(err) is StorageError, (op, type(err))
        text = str(err)
        assert endpoint in text, (op, text)
        assert "refused" in text and "credentials" in text, (op, text)
        assert err.operation == op and err.context["endpoint"] == endpoint
        assert err.__cause__ is None and err.__suppress_context__   # no botocore traceback
        assert "not-the-secret" not in text


def test_s3_unreachable_endpoint_is_a_storage_error(s3_env: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    store: Any = make_s3("playstream", "x", max_attempts=2, connect_timeout=1)
    with pytest.raises(StorageError, match=f"cannot reach http://127.0.0.1:{port}"):
        store.read("a")


def test_s3_restart_between_operations_loses_nothing(
        s3_server: LocalS3, s3_env: dict[str, str], s3_bucket: str, s3_prefix: str,
        tmp_path: Path) -> None:
    store: Any = make_s3(s3_bucket, s3_prefix, multipart_threshold=1 * MiB, part_size=5 * MiB)
    big = big_file(tmp_path / "big", 6 * MiB + 7)
    small = {f"r/{i}": os.urandom(10_000 + i) for i in range(5)}
    for name, data in small.items():
        assert store.create_if_absent(name, data)
    assert store.create_if_absent("r/big", big)
    endpoint = s3_server.endpoint

    s3_server.stop()                     # clean stop: SIGTERM
    with pytest.raises(StorageError, match="cannot reach"):
        make_s3(s3_bucket, s3_prefix, max_attempts=1).read("r/0")
    assert s3_server.start() == endpoint     # same dir: same port, same objects

    # the same store object (and its connection pool) keeps working
    assert [o.name for o in store.list("r/")] == sorted([*small, "r/big"])
    for name, data in small.items():
        assert sha256(store.read(name)) == sha256(data)
    assert sha256(store.read("r/big")) == file_sha256(big)
    assert store.create_if_absent("r/0", b"overwrite?") is False
    assert store.read("r/0") == small["r/0"]

    s3_server.restart(kill=True)         # unclean: SIGKILL, then start
    assert store.create_if_absent("r/after", b"after the kill") is True
    assert store.create_if_absent("r/after", b"again") is False
    assert sha256(store.read("r/big")) == file_sha256(big)
    assert store.read("r/after") == b"after the kill"
    assert len(list(store.list("r/"))) == len(small) + 2


def test_s3_list_hides_server_internals_and_pending_uploads(
        s3_env: dict[str, str], s3_bucket: str, s3_prefix: str) -> None:
    store: Any = make_s3(s3_bucket, s3_prefix)
    store.write("l/a", b"1")
    upload = store._client.create_multipart_upload(Bucket=s3_bucket, Key=store._key("l/pending"))
    store._client.upload_part(Bucket=s3_bucket, Key=store._key("l/pending"),
                              UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 100)
    try:
        assert [o.name for o in store.list()] == ["l/a"]
        assert not store.exists("l/pending")
    finally:
        store._client.abort_multipart_upload(Bucket=s3_bucket, Key=store._key("l/pending"),
                                             UploadId=upload["UploadId"])


# ---------------------------------------------------------------------------------- local specifics
def test_local_temp_files_are_never_listed_and_link_is_used(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    assert store.create_if_absent("a/b", b"data")
    (tmp_path / "s" / "a" / ".playstream-tmp-leftover").write_bytes(b"crash leftover")
    assert [o.name for o in store.list()] == ["a/b"]
    assert (tmp_path / "s" / "a" / "b").stat().st_nlink == 1    # temp name unlinked
    assert sorted(p.name for p in (tmp_path / "s" / "a").iterdir()) == [
        ".playstream-tmp-leftover", "b"]


def test_local_store_root_is_created_on_first_write(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "new" / "store")
    assert list(store.list()) == []      # an unused root is an empty store, like an S3 prefix
    assert not (tmp_path / "new").exists()
    store.write("a/b/c", b"1")
    assert (tmp_path / "new" / "store" / "a" / "b" / "c").read_bytes() == b"1"


# ---------------------------------------------------------------------------------- open_storage
def test_open_storage_names(tmp_path: Path) -> None:
    local = open_storage(tmp_path / "x")
    assert isinstance(local, LocalStorage) and local.location == str(tmp_path / "x")
    assert isinstance(open_storage(str(tmp_path / "y")), LocalStorage)
    assert open_storage(f"file://{tmp_path}/z").location == f"{tmp_path}/z"
    assert local.url("a/b") == str(tmp_path / "x" / "a" / "b")
    for bad in ("gs://bucket/x", "s3://", "s3:///prefix"):
        with pytest.raises(StorageError):
            open_storage(bad)
    with pytest.raises(InvalidObjectNameError):
        open_storage("s3://playstream/a/../b")


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def test_the_pure_core_does_not_import_boto3() -> None:
    proc = _run_python("import sys, playstream.storage as s, playstream.storage.local, "
                       "playstream.storage.port\n"
                       "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                       "('boto3', 'botocore')))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_s3_extra_is_a_clear_error() -> None:
    proc = _run_python(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('boto3', 'botocore'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from playstream.storage import open_storage, StorageError\n"
        "try:\n"
        "    open_storage('s3://playstream/x')\n"
        "except StorageError as err:\n"
        "    print(err)\n")
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'playstream[s3]'" in proc.stdout


def test_s3_restart_mid_multipart_upload_loses_nothing(
        s3_server: LocalS3, s3_env: dict[str, str], s3_bucket: str, s3_prefix: str,
        tmp_path: Path) -> None:
    """S3Proxy SIGKILLed and restarted between two parts of a multipart seal: the upload goes
    on with the same upload id and the sealed object is exactly the file."""
    store: Any = make_s3(s3_bucket, s3_prefix, multipart_threshold=1 * MiB, part_size=5 * MiB)
    real_upload_part = store._client.upload_part
    parts: list[int] = []

    def upload_part_then_restart(**kwargs: Any) -> Any:
        resp = real_upload_part(**kwargs)
        parts.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] == 1:
            s3_server.restart(kill=True)
        return resp

    store._client.upload_part = upload_part_then_restart
    src = big_file(tmp_path / "f", 12 * MiB + 3)
    assert store.create_if_absent("mp/restarted", src) is True
    assert parts == [1, 2, 3]
    store._client.upload_part = real_upload_part
    assert sha256(store.read("mp/restarted")) == file_sha256(src)
    assert store.create_if_absent("mp/restarted", src) is False
    assert _open_uploads(store) == []


def test_local_name_that_is_a_folder_is_an_error_not_false(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    store.write("a/b", b"1")
    for call in (lambda: store.create_if_absent("a", b"x"), lambda: store.write("a", b"x"),
                 lambda: store.create_if_absent("a/b/c", b"x")):
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.name in ("a", "a/b/c")
    assert store.read("a/b") == b"1"


def test_s3_script_status_env_and_help(s3_server: LocalS3) -> None:
    script = REPO / "deploy" / "s3" / "s3.sh"
    status = subprocess.run(["bash", str(script), "status", "--dir", str(s3_server.directory)],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and status.stdout.strip() == s3_server.endpoint
    env = s3_server.env()
    assert set(env) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                        "AWS_DEFAULT_REGION"}
    assert env["AWS_ENDPOINT_URL"] == s3_server.endpoint
    conf = s3_server.directory / "s3proxy.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    assert "s3proxy.endpoint=http://127.0.0.1:" in conf.read_text()
    assert env["AWS_SECRET_ACCESS_KEY"] not in (s3_server.directory / "s3proxy.log").read_text()
    helped = subprocess.run(["bash", str(script), "help"], capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and "start --dir DIR [--port P]" in helped.stdout


def test_s3_script_status_of_a_stopped_dir_fails(tmp_path: Path) -> None:
    script = REPO / "deploy" / "s3" / "s3.sh"
    (tmp_path / "d").mkdir()
    status = subprocess.run(["bash", str(script), "status", "--dir", str(tmp_path / "d")],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 1 and status.stdout == ""
