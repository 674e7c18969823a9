"""Publishing a dataset all-or-nothing, and the manifest that says what it was made of.

Readers must never see a half-written dataset, and a failed run must leave the previous one
exactly as it was. So everything is written into a private staging folder and appears only by
renames: a single ``.npz`` output is replaced with ``os.replace``; a dataset directory gets a
new version folder ``<UTC time>-<n>`` and the ``current`` symlink is swapped atomically to it
(KataGo's shuffled-data directories, with a symlink instead of "pick the newest folder").
A non-blocking ``flock`` keeps two finalizers from publishing to the same output.

The manifest is the read-side commit point: it lists every chunk considered (with its sha256,
so retention can prove a chunk was published before deleting it) and every output file.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, NamedTuple, Sequence

from playstream.dataset import DatasetConfig
from playstream.durable import fsync_dir
from playstream.errors import DatasetError, PlaystreamError, StorageError
from playstream.locks import ProcessLock, holder_of
from playstream.storage import Storage, open_storage

MANIFEST_FORMAT = "playstream-manifest"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
CURRENT = "current"
CLAIMS = "claims"   # object stores: claims/<n> marks version number n as taken
MAX_MANIFEST_BYTES = 256 << 20
SPLITS = ("train", "val")
_VERSION_DIR = re.compile(r"^[0-9]{8}T[0-9]{6}Z-(?P<n>[0-9]{1,12})$")
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class ChunkEntry:
    """One chunk the run considered; ``rows_used`` is 0 when the window or dedup left none.
    ``source`` is the chunk's origin (`ChunkOrigin.to_json`: the game file, or the Kafka topic
    and partition), so a dataset names where its rows came from even after retention deleted
    the chunks."""

    file: str
    config_key: str
    stream: str
    first: int
    last: int
    rows: int
    rows_used: int
    sha256: str
    source: dict[str, Any]


class QuarantinedChunk(NamedTuple):
    """A chunk that failed a check: where it lies now in the store's quarantine (the file on a
    local store, the store-relative name on an object store) and why."""

    path: Path | PurePosixPath
    reason: str


@dataclass(frozen=True)
class OutputEntry:
    """One published file; ``sha256`` is None only in the copy of the manifest embedded in
    that very file (a file cannot contain its own digest)."""

    file: str
    split: str
    rows: int
    games: int
    sha256: str | None
    bytes: int | None


def build_manifest(config: DatasetConfig, options: dict[str, Any], chunks: list[ChunkEntry],
                   quarantined: list[QuarantinedChunk], outputs: list[OutputEntry],
                   games: dict[str, int], duplicate_moves: int,
                   superseded: Sequence[str] = ()) -> dict[str, Any]:
    """``games`` holds the distinct games per split (a shuffled game spreads over shards, so
    the per-file counts do not add up to it); ``duplicate_moves`` the games that repeat an
    older game's move sequence under another id (kept unless the options drop them).
    ``superseded`` names the chunks left out because their range overlaps the chosen cover of
    their stream (`chunk_cover`)."""
    rows = {s: sum(o.rows for o in outputs if o.split == s) for s in SPLITS}
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "config_key": config.key(),
        "config": config.to_metadata(),
        "options": options,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "chunks": [asdict(c) for c in chunks],
        "quarantined": [{"file": q.path.name, "reason": q.reason, "moved_to": str(q.path)}
                        for q in quarantined],
        "superseded": sorted(superseded),
        "outputs": [asdict(o) for o in outputs],
        "totals": {
            "rows": rows["train"] + rows["val"],
            "train_rows": rows["train"],
            "val_rows": rows["val"],
            "games": games.get("train", 0) + games.get("val", 0),
            "train_games": games.get("train", 0),
            "val_games": games.get("val", 0),
            "chunks": len(chunks),
            "chunks_used": sum(1 for c in chunks if c.rows_used),
            "quarantined": len(quarantined),
            "bytes": sum(o.bytes or 0 for o in outputs),
            "duplicate_moves": duplicate_moves,
        },
    }


def is_object_url(output: str | os.PathLike[str]) -> bool:
    return os.fspath(output).startswith("s3://")


def output_child(output: str | os.PathLike[str], name: str) -> Path | str:
    """``output/name`` for a local folder or an ``s3://`` prefix (a finalizer's output holds one
    dataset per configuration key)."""
    if is_object_url(output):
        return f"{os.fspath(output).rstrip('/')}/{name}"
    return Path(output) / name


def is_single_file(output: str | os.PathLike[str]) -> bool:
    return os.fspath(output).endswith(".npz")


def manifest_sidecar(output: Path) -> Path:
    """Where a single-file dataset's manifest lives."""
    return output.with_name(output.name + ".manifest.json")


def staged_file(staging: Path, split: str, shard: int | None, single_file: str | None,
                output: str) -> Path:
    """The staged path of one output file, the same for a local and an object-store output:
    ``single_file`` (the .npz name) holds only an unsharded train split; a dataset directory
    gets ``<split>.npz`` or ``<split>-<shard>.npz``."""
    if split not in SPLITS:
        raise PlaystreamError(f"unknown split {split!r}", field="split")
    if single_file is not None:
        if split != "train" or shard is not None:
            raise PlaystreamError("a single .npz output holds one unsharded train split",
                                  path=output, field="split")
        return staging / single_file
    return staging / (f"{split}.npz" if shard is None else f"{split}-{shard:05d}.npz")


class Publication:
    """One attempt to publish at ``output``: the lock, the staging folder, the commit.

    Use as a context manager; leaving the block without ``commit`` (an exception, a full disk)
    removes the staging folder and leaves whatever was published before untouched.
    """

    def __init__(self, output: Path, *, keep_versions: int) -> None:
        self.output = Path(output)
        self.single_file = is_single_file(self.output)
        self.keep_versions = keep_versions
        self._parent = self.output.parent if self.single_file else self.output
        self.lock_path = (self.output.with_name(self.output.name + ".lock") if self.single_file
                          else self.output / ".lock")
        self._tmp_prefix = (f".{self.output.name}{_TMP_PREFIX}" if self.single_file
                            else _TMP_PREFIX)
        self.staging = self._parent / f"{self._tmp_prefix}{uuid.uuid4().hex}"
        self._lock: ProcessLock | None = None
        self._committed = False

    @property
    def work_dir(self) -> Path:
        """Scratch space on the output's file system (selection masks, shuffle buckets)."""
        return self.staging / ".work"

    def __enter__(self) -> Publication:
        try:
            self._parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DatasetError(f"cannot create the output folder: {err.strerror}",
                               path=str(self._parent), check="publish") from None
        self._take_lock()
        try:
            self._sweep_staging()
            self.work_dir.mkdir(parents=True)
        except BaseException:
            self._release_lock()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if not self._committed:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._release_lock()

    def _take_lock(self) -> None:
        self._lock = ProcessLock.acquire(self.lock_path)
        if self._lock is None:
            raise DatasetError(f"another finalizer is publishing to this output (lock "
                               f"{self.lock_path} held by pid {holder_of(self.lock_path)})",
                               path=str(self.output), check="lock")

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _sweep_staging(self) -> None:
        """Staging folders and link temps left by a crashed run (we hold the lock, so none
        is in use)."""
        for p in self._parent.iterdir():
            if p.name.startswith(self._tmp_prefix) and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif not self.single_file and p.name.startswith(f".{CURRENT}-") and p.is_symlink():
                p.unlink()

    def file_path(self, split: str, shard: int | None) -> Path:
        """Where to write one output file inside the staging folder."""
        return staged_file(self.staging, split, shard,
                           self.output.name if self.single_file else None, str(self.output))

    def commit(self, manifest: dict[str, Any]) -> tuple[list[Path], Path]:
        """Make the staged files visible at once; returns (published files, manifest path)."""
        shutil.rmtree(self.work_dir)
        files = [o["file"] for o in manifest["outputs"]]
        if self.single_file:
            result = self._commit_file(manifest)
        else:
            result = self._commit_version(manifest, files)
        self._committed = True
        return result

    def _commit_file(self, manifest: dict[str, Any]) -> tuple[list[Path], Path]:
        os.replace(self.staging / self.output.name, self.output)
        fsync_dir(self._parent)
        sidecar = manifest_sidecar(self.output)
        staged = self.staging / sidecar.name
        _write_json(staged, manifest)
        os.replace(staged, sidecar)
        fsync_dir(self._parent)
        shutil.rmtree(self.staging)
        return [self.output], sidecar

    def _commit_version(self, manifest: dict[str, Any],
                        files: list[str]) -> tuple[list[Path], Path]:
        _write_json(self.staging / MANIFEST_NAME, manifest)
        fsync_dir(self.staging)
        versions = dataset_versions(self.output)
        number = max(versions, default=0) + 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        version = self.output / f"{stamp}-{number}"
        os.rename(self.staging, version)
        link = self.output / f".{CURRENT}-{uuid.uuid4().hex}"
        try:
            os.symlink(version.name, link)
            os.replace(link, self.output / CURRENT)
        except BaseException:
            link.unlink(missing_ok=True)
            shutil.rmtree(version, ignore_errors=True)
            raise
        fsync_dir(self.output)
        self._prune(versions, keep=self.keep_versions - 1)
        return [version / f for f in files], version / MANIFEST_NAME

    def _prune(self, older: dict[int, Path], *, keep: int) -> None:
        """Keep the ``keep`` newest of the versions before the one just published."""
        for n in sorted(older)[:max(0, len(older) - keep)]:
            shutil.rmtree(older[n])


def dataset_versions(output: Path) -> dict[int, Path]:
    """The version folders of a dataset directory by their number (oldest first when
    sorted); the ``current`` link and staging folders are not versions."""
    found = {}
    for p in output.iterdir():
        m = _VERSION_DIR.match(p.name)
        if m and p.is_dir() and not p.is_symlink():
            found[int(m["n"])] = p
    return found

class ObjectPublication:
    """One attempt to publish at an ``s3://`` output, with the interface of `Publication`.

    Files are staged in a local folder. A dataset directory gets a new version prefix
    ``<UTC time>-<n>/``: its shards are created first (``create_if_absent``, in parts when
    large), then its ``manifest.json``, and last the small ``current`` object is replaced with
    the version's name. A reader goes through ``current`` to a version whose manifest and
    shards all exist, so it never sees a half-published version; a run that fails before the
    pointer leaves the previous version current (its partial objects are removed, or swept by
    a later run). Two finalizers on one output cannot pick the same version: the second
    ``create_if_absent`` of a shard or of the manifest fails and the run is refused. A single
    ``.npz`` output is written whole (one atomic put), then its sidecar manifest.
    """

    def __init__(self, output: str, *, keep_versions: int) -> None:
        self.output = output.rstrip("/")
        self.single_file = is_single_file(self.output)
        self.keep_versions = keep_versions
        if self.single_file:
            parent, _, self.file_name = self.output.rpartition("/")
            self.storage = open_storage(parent)
        else:
            self.file_name = ""
            self.storage = open_storage(self.output)
        self.staging = Path(tempfile.mkdtemp(prefix="playstream-publish-"))
        self._committed = False

    @property
    def work_dir(self) -> Path:
        return self.staging / ".work"

    def __enter__(self) -> ObjectPublication:
        self.work_dir.mkdir()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def file_path(self, split: str, shard: int | None) -> Path:
        """Where to write one output file inside the staging folder."""
        return staged_file(self.staging, split, shard,
                           self.file_name if self.single_file else None, self.output)

    def _fail(self, err: PlaystreamError) -> DatasetError:
        return DatasetError(f"publishing failed: {err.message}", path=self.output,
                            check="publish", **err.context)

    def commit(self, manifest: dict[str, Any]) -> tuple[list[str], str]:
        """Upload and publish; returns (URLs of the published files, URL of the manifest)."""
        shutil.rmtree(self.work_dir)
        files = [o["file"] for o in manifest["outputs"]]
        body = (json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
        try:
            if self.single_file:
                self.storage.write(self.file_name, self.staging / self.file_name)
                sidecar = f"{self.file_name}.manifest.json"
                self.storage.write(sidecar, body)
                result = ([self.storage.url(self.file_name)], self.storage.url(sidecar))
            else:
                result = self._commit_version(body, files)
        except StorageError as err:
            raise self._fail(err) from None
        self._committed = True
        return result

    def _versions(self) -> tuple[dict[int, str], set[int]]:
        """The versions present (number → prefix) and every version number ever claimed."""
        found: dict[int, str] = {}
        claimed: set[int] = set()
        for obj in self.storage.list(""):
            head, _, rest = obj.name.partition("/")
            if head == CLAIMS and rest.isdigit():
                claimed.add(int(rest))
            elif m := _VERSION_DIR.match(head):
                found[int(m["n"])] = head
        return found, claimed | set(found)

    def _commit_version(self, body: bytes, files: list[str]) -> tuple[list[str], str]:
        versions, claimed = self._versions()
        number = max(claimed, default=0) + 1
        version = f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{number}"
        # one finalizer per version number: the claim is a create-if-absent, kept even if
        # this run fails, so a number is never used twice
        if not self.storage.create_if_absent(f"{CLAIMS}/{number:012d}", version.encode()):
            raise DatasetError(f"another finalizer is publishing version {number} to this "
                               "output", path=self.output, check="lock")
        created: list[str] = []
        try:
            for name in [*files, MANIFEST_NAME]:
                obj = f"{version}/{name}"
                source: Path | bytes = body if name == MANIFEST_NAME else self.staging / name
                if not self.storage.create_if_absent(obj, source):
                    raise DatasetError(f"version {version} exists already", path=self.output,
                                       check="publish")
                created.append(obj)
            self.storage.write(CURRENT, f"{version}\n".encode())
        except BaseException:
            for obj in created:
                self.storage.delete(obj)
            raise
        self._prune(versions, keep=self.keep_versions - 1)
        return ([self.storage.url(f"{version}/{f}") for f in files],
                self.storage.url(f"{version}/{MANIFEST_NAME}"))

    def _prune(self, older: dict[int, str], *, keep: int) -> None:
        """Delete all but the ``keep`` newest of the versions before the one just published,
        and their claims."""
        doomed = {older[n] for n in sorted(older)[:max(0, len(older) - keep)]}
        for obj in list(self.storage.list("")):
            if obj.name.split("/", 1)[0] in doomed:
                self.storage.delete(obj.name)
        for n in sorted(older)[:max(0, len(older) - keep)]:
            self.storage.delete(f"{CLAIMS}/{n:012d}")


def open_publication(output: str | os.PathLike[str], *,
                     keep_versions: int) -> Publication | ObjectPublication:
    """The publication for a local output path or an ``s3://`` output."""
    if is_object_url(output):
        return ObjectPublication(os.fspath(output), keep_versions=keep_versions)
    return Publication(Path(output), keep_versions=keep_versions)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    with open(path, "w") as fh:
        json.dump(value, fh, indent=2, sort_keys=True, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_manifest(output: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of what ``output`` currently publishes: a dataset directory (through its
    ``current`` link), one version folder, or a single ``.npz`` file (its sidecar)."""
    if is_object_url(output):
        return _read_object_manifest(os.fspath(output).rstrip("/"))
    out = Path(output)
    if is_single_file(out):
        path = manifest_sidecar(out)
    elif (out / CURRENT).is_symlink():
        target = os.readlink(out / CURRENT)
        if not _VERSION_DIR.match(target):
            raise DatasetError(f"the {CURRENT!r} link points to {target[:80]!r}, not a version "
                               f"folder", path=str(out), check="manifest")
        path = out / target / MANIFEST_NAME
    else:
        path = out / MANIFEST_NAME
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as err:
        raise DatasetError(f"no manifest: {err.strerror}", path=str(path),
                           check="manifest") from None
    return _parse_manifest(raw, str(path))


def _read_object_manifest(url: str) -> dict[str, Any]:
    """`read_manifest` of an ``s3://`` output: a single ``.npz`` (its sidecar), a dataset
    (through its ``current`` object) or one version prefix."""
    try:
        if is_single_file(url):
            parent, _, name = url.rpartition("/")
            storage, obj = open_storage(parent), f"{name}.manifest.json"
        else:
            storage = open_storage(url)
            target = current_object_version(storage)
            obj = MANIFEST_NAME if target is None else f"{target}/{MANIFEST_NAME}"
        if storage.stat(obj).size > MAX_MANIFEST_BYTES:
            raise DatasetError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes",
                               path=storage.url(obj), check="manifest")
        return _parse_manifest(storage.read(obj), storage.url(obj))
    except StorageError as err:
        raise DatasetError(f"no manifest: {err.message}", path=url, check="manifest",
                           **{k: v for k, v in err.context.items() if k != "path"}) from None


def current_object_version(storage: Storage) -> str | None:
    """The version the ``current`` object of a dataset prefix names (None: there is none,
    the prefix is one version or a single file's folder). Its content is checked to be a
    version name before it is used in an object name."""
    if not storage.exists(CURRENT):
        return None
    target = storage.read_range(CURRENT, 0, 64).decode(errors="replace").strip()
    if not _VERSION_DIR.match(target):
        raise DatasetError(f"the {CURRENT!r} object names {target[:80]!r}, not a version",
                           path=storage.location, check="manifest")
    return target


def _parse_manifest(raw: bytes, path: str) -> dict[str, Any]:
    if len(raw) > MAX_MANIFEST_BYTES:
        raise DatasetError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes",
                           path=str(path), check="manifest")
    try:
        manifest = json.loads(raw)
    except ValueError as err:
        raise DatasetError(f"manifest is not valid JSON: {err}", path=str(path),
                           check="manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or manifest.get("version") != MANIFEST_VERSION:
        raise DatasetError(f"not a {MANIFEST_FORMAT} version {MANIFEST_VERSION} manifest",
                           path=str(path), check="manifest")
    return manifest
