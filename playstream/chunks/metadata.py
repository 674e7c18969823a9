"""The provenance a chunk carries in its metadata ``extra``: one model, written and read here.

The chunk writer writes it, and everything that needs a chunk's range, group, games or seal
time (the writer's resume, compaction, retention, announcements, `inspect`, the demo) parses it
through `ChunkMetadata.read`, so a chunk copied or edited by hand fails in one place with a
`ChunkError` naming the chunk and the field, instead of a ``KeyError`` somewhere downstream.

On disk (docs/FORMAT.md, "Chunk metadata") it is the JSON object the writer has always written::

    {"source": {"kind": "file", "file": "/abs/games.db", "stream": "...", "first": 1,
                "last": 200},
     "group": ["<config key>", ...], "games": ["<game_id>", ...],
     "skipped": [{"position": 7, "reason": "..."}], "skipped_count": 1,
     "sealed_at": "2026-11-24T10:00:00.123456+00:00"}

``kind`` is ``"kafka"`` with ``topic`` and ``partition`` for a chunk of a Kafka partition;
a writer given no origin writes neither ``kind`` nor its fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from playstream.chunks.naming import ChunkName
from playstream.dataset import read_metadata
from playstream.errors import ChunkError

MAX_SKIPPED_LISTED = 1000
MAX_REASON_CHARS = 500
OriginKind = Literal["file", "kafka"]


@dataclass(frozen=True)
class ChunkOrigin:
    """Where a stream's records come from: a game file, a Kafka partition, or unknown."""

    kind: OriginKind | None = None
    file: str | None = None
    topic: str | None = None
    partition: int | None = None

    @classmethod
    def game_file(cls, path: Path) -> ChunkOrigin:
        return cls(kind="file", file=str(Path(path).resolve()))

    @classmethod
    def kafka(cls, topic: str, partition: int) -> ChunkOrigin:
        return cls(kind="kafka", topic=topic, partition=partition)

    @property
    def unit(self) -> str:
        """What the stream positions count."""
        return {"file": "positions", "kafka": "offsets"}.get(self.kind or "", "positions")

    def describe(self) -> str:
        """One phrase for people: ``file /abs/games.db`` or ``kafka topic=T partition=P``."""
        if self.kind == "file":
            return f"file {self.file}"
        if self.kind == "kafka":
            return f"kafka topic={self.topic} partition={self.partition}"
        return "unknown origin"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind} if self.kind else {}
        if self.kind == "file":
            out["file"] = self.file
        elif self.kind == "kafka":
            out.update(topic=self.topic, partition=self.partition)
        return out

    @classmethod
    def from_json(cls, source: dict[str, Any], *, path: str, prefix: str) -> ChunkOrigin:
        kind = source.get("kind")
        if kind is None:
            return cls()
        if kind == "file":
            return cls(kind="file", file=_get(source, "file", str, path, prefix))
        if kind == "kafka":
            return cls(kind="kafka", topic=_get(source, "topic", str, path, prefix),
                       partition=_count(source, "partition", path, prefix))
        raise ChunkError(f"unknown source kind {str(kind)[:40]!r} (file or kafka)", path=path,
                         field=f"{prefix}.kind")


@dataclass(frozen=True)
class SkippedRecord:
    """A stream position whose record gave no rows, and why."""

    position: int
    reason: str


@dataclass(frozen=True)
class ChunkMetadata:
    """What one sealed chunk holds and where it came from (the metadata ``extra``).

    ``group``: the configurations sealed together for this range (a crash mid-group is found
    by comparing it with the chunks present); ``games``: the game_id of every game with rows
    here, in stream order; ``moves_digests``: the digest of each of those games' move sequence
(`GameRecord.moves_digest`, hex), for counting the same game under two ids (empty in chunks
written before digests were recorded); ``skipped``: the first `MAX_SKIPPED_LISTED` skipped positions,
    ``skipped_count`` all of them; ``sealed_at``: the seal time (UTC), which orders chunks for
    windows and retention.
    """

    stream: str
    first: int
    last: int
    origin: ChunkOrigin
    group: tuple[str, ...]
    games: tuple[str, ...]
    moves_digests: tuple[str | None, ...]  # hex digest per game (None: unknown; () if absent)
    skipped: tuple[SkippedRecord, ...]
    skipped_count: int
    sealed_at: datetime

    def __post_init__(self) -> None:
        if self.sealed_at.tzinfo is None:
            raise ChunkError("sealed_at must carry a time zone", field="extra.sealed_at")

    @property
    def name(self) -> ChunkName:
        return ChunkName(self.stream, self.first, self.last)

    def check_name(self, name: ChunkName, *, path: str) -> None:
        """ChunkError unless the metadata's range is the file name's: a chunk renamed or
        copied by hand cannot be trusted as the record of progress."""
        if (self.stream, self.first, self.last) != (name.stream, name.first, name.last):
            raise ChunkError(f"metadata source {self.stream} {self.first}..{self.last} does "
                             f"not match the file name's range {name.stream} "
                             f"{name.first}..{name.last}", path=path, field="extra.source")

    def to_metadata(self) -> dict[str, Any]:
        """The ``extra`` object the chunk writer stores."""
        return {
            "source": {**self.origin.to_json(), "stream": self.stream, "first": self.first,
                       "last": self.last},
            "group": list(self.group),
            "games": list(self.games),
            "moves_digests": list(self.moves_digests),
            "skipped": [{"position": s.position, "reason": s.reason} for s in self.skipped],
            "skipped_count": self.skipped_count,
            "sealed_at": self.sealed_at.isoformat(),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], *, path: str | Path) -> ChunkMetadata:
        """Parse the dataset metadata of the chunk at ``path``; ChunkError naming the chunk
        and the field on anything missing or malformed."""
        where = str(path)
        extra = _get(meta, "extra", dict, where, "metadata")
        source = _get(extra, "source", dict, where, "extra")
        group = _get(extra, "group", list, where, "extra")
        games = _get(extra, "games", list, where, "extra")
        skipped = _get(extra, "skipped", list, where, "extra")
        digests = extra.get("moves_digests", [])
        if not isinstance(digests, list) or (digests and len(digests) != len(games)) or not all(
                d is None or (isinstance(d, str) and d) for d in digests):
            raise ChunkError("must be a list with one digest (hex string or null) per game",
                             path=where, field="extra.moves_digests")
        for fname, items in (("group", group), ("games", games)):
            bad = next((i for i, v in enumerate(items) if not isinstance(v, str) or not v), None)
            if bad is not None:
                raise ChunkError(f"entry {bad} is not a non-empty string", path=where,
                                 field=f"extra.{fname}")
        listed = []
        for i, item in enumerate(skipped):
            if not isinstance(item, dict):
                raise ChunkError(f"entry {i} is not an object", path=where,
                                 field="extra.skipped")
            listed.append(SkippedRecord(_count(item, "position", where, f"extra.skipped.{i}"),
                                        _get(item, "reason", str, where, f"extra.skipped.{i}")))
        sealed_text = _get(extra, "sealed_at", str, where, "extra")
        try:
            sealed_at = datetime.fromisoformat(sealed_text)
        except ValueError:
            sealed_at = None
        if sealed_at is None or sealed_at.tzinfo is None:
            raise ChunkError(f"{sealed_text[:60]!r} is not an ISO time with a time zone",
                             path=where, field="extra.sealed_at")
        return cls(stream=_get(source, "stream", str, where, "extra.source"),
                   first=_count(source, "first", where, "extra.source"),
                   last=_count(source, "last", where, "extra.source"),
                   origin=ChunkOrigin.from_json(source, path=where, prefix="extra.source"),
                   group=tuple(group), games=tuple(games), moves_digests=tuple(digests),
                   skipped=tuple(listed),
                   skipped_count=_count(extra, "skipped_count", where, "extra"),
                   sealed_at=sealed_at)

    @classmethod
    def read(cls, path: str | Path) -> ChunkMetadata:
        """The chunk metadata of the chunk file at ``path`` (its metadata member only)."""
        return cls.from_metadata(read_metadata(path), path=path)


def _get(obj: dict[str, Any], key: str, kind: type, path: str, prefix: str) -> Any:
    value = obj.get(key)
    if value is None:
        raise ChunkError("missing", path=path, field=f"{prefix}.{key}")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ChunkError(f"is {type(value).__name__}, not {kind.__name__}", path=path,
                         field=f"{prefix}.{key}")
    return value


def _count(obj: dict[str, Any], key: str, path: str, prefix: str) -> int:
    value = _get(obj, key, int, path, prefix)
    if value < 0:
        raise ChunkError(f"{value} is negative", path=path, field=f"{prefix}.{key}")
    return int(value)
