"""Where a chunk or a dataset came from, told one way for all three kinds of file.

A sealed chunk names its range in its `ChunkMetadata`; a dataset names its chunks in its
manifest (embedded in a single-file export, ``manifest.json`` in a finalizer's version folder).
`provenance_of` reads whichever applies and returns the same `Provenance`: the chunks, and per
source stream the game file or Kafka topic and partition with the position ranges covered.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from playstream.chunks import ChunkMetadata, ChunkName, ChunkOrigin
from playstream.compaction.publish import MANIFEST_NAME, read_manifest
from playstream.dataset import read_metadata
from playstream.errors import DatasetError

MAX_CHUNKS_SHOWN = 20
_KAFKA_STREAM = re.compile(r"^(?P<topic>.+)\+(?P<partition>[0-9]{1,9})$")


@dataclass(frozen=True)
class ChunkRef:
    """One chunk a file holds rows of (for a chunk: itself)."""

    file: str
    stream: str
    first: int
    last: int
    rows: int
    origin: ChunkOrigin


@dataclass(frozen=True)
class Provenance:
    """``kind`` is ``chunk``, ``export`` (a single-file dataset with its embedded manifest) or
    ``dataset`` (a finalizer or directory dataset, from its manifest.json)."""

    kind: str
    chunks: tuple[ChunkRef, ...]
    manifest: Path | None = None
    notes: tuple[str, ...] = ()  # for a chunk: seal time, group, skipped records

    def lines(self) -> Iterator[str]:
        """The text `playstream inspect` prints: a heading, one line per source stream with
        its merged position ranges, then the chunks."""
        streams: dict[str, list[ChunkRef]] = {}
        for ref in self.chunks:
            streams.setdefault(ref.stream, []).append(ref)
        where = f" (manifest {self.manifest})" if self.manifest else ""
        yield (f"provenance of this {self.kind}{where}: {len(self.chunks)} chunk(s) from "
               f"{len(streams)} source stream(s)")
        for stream, refs in streams.items():
            origin = next((r.origin for r in refs if r.origin.kind), refs[0].origin)
            ranges = ", ".join(f"{a}..{b}" for a, b in _merged((r.first, r.last) for r in refs))
            yield (f"  source {origin.describe()} (stream {stream}): {origin.unit} {ranges}; "
                   f"{len(refs)} chunk(s), {sum(r.rows for r in refs)} rows")
        for ref in self.chunks[:MAX_CHUNKS_SHOWN]:
            yield f"  chunk {ref.file}  rows={ref.rows}"
        if len(self.chunks) > MAX_CHUNKS_SHOWN:
            yield f"  ... and {len(self.chunks) - MAX_CHUNKS_SHOWN} more chunk(s)"
        for note in self.notes:
            yield f"  {note}"


def provenance_of(path: Path) -> Provenance | None:
    """The provenance of a chunk file, a dataset file (its embedded manifest, or the
    manifest.json of the version folder it lies in) or a dataset directory (a version folder,
    or a dataset folder through its ``current`` link); None for a file that names none."""
    if path.is_dir():
        return _from_manifest("dataset", read_manifest(path), _manifest_path(path))
    meta = read_metadata(path)
    extra = meta.get("extra")
    if isinstance(extra, dict) and isinstance(extra.get("manifest"), dict):
        return _from_manifest("export", extra["manifest"], None)
    if isinstance(extra, dict) and "source" in extra:
        chunk = ChunkMetadata.from_metadata(meta, path=path)
        ref = ChunkRef(path.name, chunk.stream, chunk.first, chunk.last, int(meta["rows"]),
                       chunk.origin)
        return Provenance("chunk", (ref,), notes=(
            f"sealed_at {chunk.sealed_at.isoformat()}", f"group {', '.join(chunk.group)}",
            f"games {len(chunk.games)}, skipped records {chunk.skipped_count}"))
    if (path.parent / MANIFEST_NAME).is_file():
        return _from_manifest("dataset", read_manifest(path.parent), path.parent / MANIFEST_NAME)
    return None


def manifest_provenance(manifest: dict[str, Any]) -> Provenance:
    """The provenance a dataset manifest tells (one read from an object store, say)."""
    return _from_manifest("dataset", manifest, None)


def _manifest_path(folder: Path) -> Path:
    current = folder / "current"
    return (current.resolve() if current.is_symlink() else folder) / MANIFEST_NAME


def _from_manifest(kind: str, manifest: dict[str, Any], where: Path | None) -> Provenance:
    refs = []
    for i, entry in enumerate(manifest.get("chunks", [])):
        try:
            refs.append(ChunkRef(str(entry["file"]), str(entry["stream"]), int(entry["first"]),
                                 int(entry["last"]), int(entry.get("rows_used", entry["rows"])),
                                 _origin(entry)))
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"manifest chunk entry {i} is malformed: {err!r:.80}",
                               path=str(where) if where else None, check="manifest") from None
    return Provenance(kind, tuple(r for r in refs if r.rows), where)


def _origin(entry: dict[str, Any]) -> ChunkOrigin:
    """A manifest entry's origin; manifests written before entries carried ``source`` still
    name a Kafka partition through the stream id (``topic+partition``)."""
    source = entry.get("source")
    if isinstance(source, dict) and source.get("kind"):
        return ChunkOrigin.from_json(source, path=str(entry.get("file")), prefix="source")
    m = _KAFKA_STREAM.match(str(entry.get("stream", "")))
    if m and ChunkName.parse(str(entry.get("file", ""))) is not None:
        return ChunkOrigin.kafka(m["topic"], int(m["partition"]))
    return ChunkOrigin()


def _merged(ranges: Iterator[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out
