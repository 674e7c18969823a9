"""Chunk announcements: a message on the chunks topic for every chunk a processor seals.

An announcement is a hint that lets the finalizer wake up instead of polling the store; it
is not the record of progress (the chunk names are). It is sent after the seal, so a crash
between the two loses it: consumers that must see every chunk list the store. Key = the
configuration key, so one configuration's announcements stay in order on one partition.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from playstream.chunks import SealedChunk
from playstream.errors import ChunkError

MAX_ANNOUNCEMENT_BYTES = 64 * 1024

Text = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Count = Annotated[int, Field(ge=0)]


class Announcement(BaseModel):
    """What a finalizer needs to find and verify one sealed chunk. ``name`` is the chunk's
    store-relative object name (``<config key>/<stream>+<first>+<last>.npz``), never a local
    path: processors and the finalizer may run on different machines, and each resolves the
    name against its own view of the shared store."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: Text
    config_key: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    stream: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    topic: Annotated[str, StringConstraints(min_length=1, max_length=249)]
    partition: Count
    first: Count
    last: Count
    rows: Count
    games: Count
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    sealed_at: Annotated[str, StringConstraints(min_length=1, max_length=64)]


def announcement_for(chunk: SealedChunk) -> Announcement:
    """The announcement of a chunk of a Kafka stream (``topic+partition``); its seal time is
    the one in the chunk's metadata (the seal returns it), so that the two never disagree."""
    topic, _, partition = chunk.name.stream.rpartition("+")
    if not topic or not partition.isdigit():
        raise ChunkError("not the chunk of a Kafka partition", stream=chunk.name.stream,
                         chunk=chunk.object_name)
    sealed_at = chunk.sealed_at.isoformat()
    return Announcement(name=chunk.object_name, config_key=chunk.config_key,
                        stream=chunk.name.stream, topic=topic, partition=int(partition),
                        first=chunk.name.first, last=chunk.name.last, rows=chunk.rows,
                        games=chunk.games, sha256=chunk.sha256, sealed_at=sealed_at)


def encode_announcement(announcement: Announcement) -> tuple[bytes, bytes]:
    """(key, value) of the Kafka message: the configuration key and the JSON object."""
    return announcement.config_key.encode(), announcement.model_dump_json().encode()


def decode_announcement(value: bytes) -> Announcement:
    """Parse and check one announcement; ChunkError naming the field otherwise."""
    if len(value) > MAX_ANNOUNCEMENT_BYTES:
        raise ChunkError(f"announcement is {len(value)} bytes, limit {MAX_ANNOUNCEMENT_BYTES}",
                         field="announcement")
    try:
        return Announcement.model_validate_json(value)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "announcement"
        raise ChunkError(f"invalid announcement: {first['msg']}", field=field) from None
