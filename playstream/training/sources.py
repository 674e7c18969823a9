"""What the loader reads: a snapshot of one dataset, pinned for an epoch.

A source is a dataset file, a folder of shards, a published version folder (it holds
``manifest.json``) or a finalizer output folder (its ``current`` link names the version). A
snapshot resolves the source once into plain data (files, row counts, digests), so every
worker and rank plans its share of the epoch from the same list, and a version the finalizer
publishes mid-epoch cannot change what the epoch reads: paths name the version folder, never
``current``. Only what the ``current`` link points to is read, and a version folder is
renamed into place only after its files and manifest are complete (publish.py), so a partly
written version is never seen. Files listed in a manifest are checked against its sha256.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playstream.compaction.publish import (CURRENT, MANIFEST_NAME, manifest_sidecar,
                                           read_manifest)
from playstream.dataset import DatasetConfig, read_metadata
from playstream.errors import DatasetError, LoaderError

MAX_FILES = 4096  # shards per snapshot: bounds what is held and shared with the workers


@dataclass(frozen=True)
class ShardFile:
    path: str
    rows: int
    sha256: str | None  # from the manifest; None: the file's own array checksums are used


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
    """A finalizer output folder: new versions appear behind its ``current`` link."""
    return (Path(source) / CURRENT).is_symlink()


def resolve(source: str | os.PathLike[str], split: str = "train") -> Snapshot:
    """The snapshot ``source`` publishes now; LoaderError if it holds no file of ``split``."""
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


def _from_manifest(manifest: dict[str, Any], folder: Path, version: str | None, split: str,
                   where: str) -> Snapshot:
    try:
        outputs = [o for o in manifest["outputs"] if o["split"] == split]
        files = [ShardFile(str(folder / Path(o["file"]).name), int(o["rows"]), o["sha256"])
                 for o in outputs]
        produced = sum(int(c["rows"]) for c in manifest["chunks"])
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"manifest lacks a field the loader needs: {err}", path=where,
                           check="manifest") from None
    if not files:
        raise LoaderError(f"the dataset has no {split!r} files", path=where, version=version)
    return Snapshot(_bounded(files, where), _config_of(files), version, produced)


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
