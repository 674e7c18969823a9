"""Chunk file names: ``{stream}+{first:020d}+{last:020d}.npz``.

Streams are ``{topic}+{partition}`` for Kafka (topic names cannot contain ``+``) and
``file-{stem}-{hash}`` for game files. Names are built only from validated parts, never from
record fields, so no record can steer a path.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from playstream.errors import ChunkError

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_STREAM = re.compile(r"^[A-Za-z0-9._-]{1,200}(\+[0-9]{1,6})?$")
_NAME = re.compile(r"^(?P<stream>[A-Za-z0-9._-]{1,200}(\+[0-9]{1,6})?)"
                   r"\+(?P<first>[0-9]{20})\+(?P<last>[0-9]{20})\.npz$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def validate_stream_id(stream: str) -> str:
    if not _STREAM.match(stream) or stream.startswith("."):
        raise ChunkError(f"invalid stream id {stream!r}", stream=stream)
    return stream


def topic_stream_id(topic: str, partition: int) -> str:
    if not _TOPIC.match(topic) or topic in (".", ".."):
        raise ChunkError(f"invalid Kafka topic name {topic!r}", topic=topic)
    if not 0 <= partition < 1_000_000:
        raise ChunkError(f"invalid partition {partition}", topic=topic)
    return f"{topic}+{partition}"


def file_stream_id(path: str | Path) -> str:
    """A stream id for a game file: readable stem plus a hash of the absolute path, so two
    files with the same name in different folders never share chunks."""
    resolved = str(Path(path).resolve())
    stem = _UNSAFE.sub("_", Path(path).name)[:64].strip("._") or "games"
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:10]
    return f"file-{stem}-{digest}"


@dataclass(frozen=True, order=True)
class ChunkName:
    """A sealed chunk's identity: stream and inclusive position range."""

    stream: str
    first: int
    last: int

    def __post_init__(self) -> None:
        validate_stream_id(self.stream)
        if not 0 <= self.first <= self.last < 10**20:
            raise ChunkError(f"invalid range {self.first}..{self.last}", stream=self.stream)

    @property
    def filename(self) -> str:
        return f"{self.stream}+{self.first:020d}+{self.last:020d}.npz"

    def overlaps(self, other: "ChunkName") -> bool:
        return (self.stream == other.stream and self.first <= other.last
                and other.first <= self.last)

    @classmethod
    def parse(cls, filename: str) -> "ChunkName | None":
        """The name of a sealed chunk, or None for anything else (temp files, notes)."""
        m = _NAME.match(filename)
        if not m:
            return None
        return cls(m["stream"], int(m["first"]), int(m["last"]))
