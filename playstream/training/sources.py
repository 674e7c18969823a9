"""What the loader reads: a snapshot of one dataset, pinned for an epoch.

A source is a dataset file, a folder of shards, a published version folder (it holds
``manifest.json``) or a finalizer output folder (its ``current`` link names the version), or
the same published in an object store (``s3://bucket/prefix``: a dataset prefix with its
``current`` object, one version prefix, or a single ``.npz`` with its sidecar manifest). A
snapshot resolves the source once into plain data (files, row counts, digests), so every
worker and rank plans its share of the epoch from the same list, and a version the finalizer
publishes mid-epoch cannot change what the epoch reads: paths name the version folder, never
``current``. Only what the ``current`` link points to is read, and a version folder is
renamed into place only after its files and manifest are complete (publish.py), so a partly
written version is never seen (in an object store: the ``current`` object is written after
the version's shards and manifest). Files listed in a manifest are checked against its
sha256; object-store files are read through a local cache (cache.py), so only manifests name
them and every one has a sha256.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from playstream.compaction.publish import (CURRENT, MANIFEST_NAME, current_object_version,
                                           is_single_file, manifest_sidecar, read_manifest)
from playstream.dataset import DatasetConfig, read_metadata
from playstream.errors import DatasetError, InvalidObjectNameError, LoaderError
from playstream.storage import is_url, open_object, open_storage, validate_name

MAX_FILES = 4096  # shards per snapshot: bounds what is held and shared with the workers


@dataclass(frozen=True)
class ShardFile:
    path: str  # a local path, or the s3:// URL of an object (read through the cache)
    rows: int
    sha256: str | None  # from the manifest; None: the file's own array checksums are used

    @property
    def remote(self) -> bool:
        return is_url(self.path)

    def exists(self) -> bool:
        if not self.remote:
            return Path(self.path).is_file()
        storage, name = open_object(self.path)
        return storage.exists(name)


@dataclass(frozen=True)
class Snapshot:
    """The files of one split of one dataset version, in a fixed order."""

    files: tuple[ShardFile, ...]
    config: DatasetConfig
    version: str | None  # the version folder's name when read through a manifest
    produced_rows: int | None  # rows self-play produced, summed over the manifest's chunks

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {"files": [[f.path, f.rows, f.sha256] for f in self.files],
                "config": self.config.to_metadata(), "version": self.version,
                "produced_rows": self.produced_rows}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        return cls(tuple(ShardFile(p, int(n), s) for p, n, s in data["files"]),
                   DatasetConfig.from_metadata(data["config"]), data["version"],
                   data["produced_rows"])


def is_followable(source: str | os.PathLike[str]) -> bool:
    """A finalizer output folder: new versions appear behind its ``current`` link (object)."""
    if is_url(source):
        url = os.fspath(source).rstrip("/")
        return not is_single_file(url) and open_storage(url).exists(CURRENT)
    return (Path(source) / CURRENT).is_symlink()


def resolve(source: str | os.PathLike[str], split: str = "train") -> Snapshot:
    """The snapshot ``source`` publishes now; LoaderError if it holds no file of ``split``."""
    if is_url(source):
        return _resolve_object(os.fspath(source).rstrip("/"), split)
    root = Path(source)
    if root.is_file():
        sidecar = manifest_sidecar(root)
        if sidecar.is_file():
            return _from_manifest(read_manifest(root), root.parent, None, split, str(root))
        return _from_files([root], None)
    if not root.is_dir():
        raise LoaderError("the training source is neither a dataset file nor a folder",
                          path=str(root))
    if is_followable(root):
        version = os.readlink(root / CURRENT)  # read_manifest checks it names a version
        manifest = read_manifest(root)
        if os.readlink(root / CURRENT) != version:  # republished in between: read it again
            return resolve(source, split)
        return _from_manifest(manifest, root / version, version, split, str(root))
    if (root / MANIFEST_NAME).is_file():
        return _from_manifest(read_manifest(root), root, root.name, split, str(root))
    files = sorted(p for p in root.glob("*.npz") if p.is_file())
    return _from_files(files, None)


def _resolve_object(url: str, split: str) -> Snapshot:
    """`resolve` of an ``s3://`` source. The configuration comes from the manifest (reading
    each file's metadata would mean a request per shard); every reader checks its file
    against it when it opens the cached copy."""
    if is_single_file(url):
        parent = url.rpartition("/")[0]
        manifest = read_manifest(url)
        return _from_manifest(manifest, parent, None, split, url, config=_manifest_config(
            manifest, url), only=url.rpartition("/")[2])
    version = current_object_version(open_storage(url))
    folder = f"{url}/{version}" if version else url
    manifest = read_manifest(folder)
    return _from_manifest(manifest, folder, version or url.rpartition("/")[2], split, url,
                          config=_manifest_config(manifest, url))


def _manifest_config(manifest: dict[str, Any], where: str) -> DatasetConfig:
    try:
        return DatasetConfig.from_metadata(manifest["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"manifest lacks a valid config: {err}", path=where,
                           check="manifest") from None


def _from_manifest(manifest: dict[str, Any], folder: Path | str, version: str | None,
                   split: str, where: str, *, config: DatasetConfig | None = None,
                   only: str | None = None) -> Snapshot:
    """The manifest's ``split`` files in ``folder`` (a local folder, or a URL prefix whose
    file names are checked as object names, so a manifest cannot point the loader outside
    it); ``only`` keeps one file name (a single file's sidecar names just it)."""
    try:
        outputs = [o for o in manifest["outputs"] if o["split"] == split]
        files = []
        for o in outputs:
            name = PurePosixPath(o["file"]).name
            if only is not None and name != only:
                continue
            if isinstance(folder, str):
                path = f"{folder}/{validate_name(name)}"
            else:
                path = str(folder / name)
            files.append(ShardFile(path, int(o["rows"]), o["sha256"]))
        produced = sum(int(c["rows"]) for c in manifest["chunks"])
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"manifest lacks a field the loader needs: {err}", path=where,
                           check="manifest") from None
    except InvalidObjectNameError as err:
        raise DatasetError(f"manifest names a file the store cannot hold: {err.message}",
                           path=where, check="manifest", **err.context) from None
    if not files:
        raise LoaderError(f"the dataset has no {split!r} files", path=where, version=version)
    if any(f.remote and f.sha256 is None for f in files):
        raise DatasetError("an object-store manifest entry has no sha256", path=where,
                           check="manifest")
    return Snapshot(_bounded(files, where), config or _config_of(files), version, produced)


def _from_files(paths: list[Path], version: str | None) -> Snapshot:
    if not paths:
        raise LoaderError("the folder holds no .npz files")
    files = [ShardFile(str(p), int(read_metadata(p)["rows"]), None) for p in paths]
    return Snapshot(_bounded(files, str(paths[0].parent)), _config_of(files), version, None)


def _bounded(files: list[ShardFile], where: str) -> tuple[ShardFile, ...]:
    if len(files) > MAX_FILES:
        raise LoaderError(f"{len(files)} files, more than the {MAX_FILES} one snapshot may "
                          f"hold", path=where)
    return tuple(files)


def _config_of(files: list[ShardFile]) -> DatasetConfig:
    """The shared configuration; rows of two configurations never mix in one batch."""
    configs = [DatasetConfig.from_metadata(read_metadata(f.path)) for f in files]
    for f, config in zip(files[1:], configs[1:]):
        configs[0].compatible_with(config, path=f.path)
    return configs[0]


def check_file(shard: ShardFile) -> None:
    """DatasetError unless the file's sha256 is the manifest's (files without one are
    checked array by array when opened)."""
    if shard.sha256 is None:
        return
    digest = hashlib.sha256()
    with open(shard.path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != shard.sha256:
        raise DatasetError("sha256 of the file does not match its manifest entry",
                           path=shard.path, check="checksums")
