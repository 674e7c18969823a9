"""The dead-letter message: a record the processor could not use, and exactly why.

The value is the record's original bytes, so an operator can fix and republish it; the
headers say where it came from (topic, partition, offset) and what was wrong (reason, field,
game_id); the key is the record's own key. A payload above the record size bound is cut to
that bound (the reason says so), so a dead letter always fits the topic it is written to.

Dead letters are at least once: an invalid record whose offset was not sealed yet when its
partition moved (rebalance, crash) is read and dead-lettered again by the next owner.
Consumers deduplicate by (source topic, partition, offset).
"""
from __future__ import annotations

from dataclasses import dataclass

from playstream.errors import RecordError
from playstream.records import MAX_RECORD_BYTES

REASON = "playstream-reason"
FIELD = "playstream-field"
SOURCE_TOPIC = "playstream-source-topic"
SOURCE_PARTITION = "playstream-source-partition"
SOURCE_OFFSET = "playstream-source-offset"
GAME_ID = "playstream-game-id"
HEADERS = (REASON, FIELD, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, GAME_ID)
MAX_REASON_CHARS = 2000
# Room for the longest reason we write (UTF-8: up to 4 bytes a character) and its note.
MAX_HEADER_BYTES = 16 * 1024

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class DeadLetter:
    """One rejected record at its source position. ``field`` and ``game_id`` are None when
    the record was not readable far enough to name them."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    reason: str
    field: str | None
    game_id: str | None
    payload: bytes


@dataclass(frozen=True)
class DeadLetterMessage:
    key: bytes | None
    value: bytes
    headers: Headers


def encode_dead_letter(letter: DeadLetter) -> DeadLetterMessage:
    """The Kafka message for ``letter``; the payload is cut to `MAX_RECORD_BYTES`."""
    reason = letter.reason[:MAX_REASON_CHARS]
    value = letter.payload
    if len(value) > MAX_RECORD_BYTES:
        reason += (f" (payload truncated to the first {MAX_RECORD_BYTES} of its "
                   f"{len(value)} bytes)")
        value = value[:MAX_RECORD_BYTES]
    fields = {REASON: reason, FIELD: letter.field or "", SOURCE_TOPIC: letter.topic,
              SOURCE_PARTITION: str(letter.partition), SOURCE_OFFSET: str(letter.offset),
              GAME_ID: letter.game_id or ""}
    return DeadLetterMessage(letter.key, value,
                             [(name, fields[name].encode()) for name in HEADERS])


def decode_dead_letter(key: bytes | None, value: bytes, headers: Headers) -> DeadLetter:
    """Read a dead-letter message back (operators, tools); RecordError naming the header
    when it is not one."""
    found: dict[str, str] = {}
    for name, raw in headers:
        if name in HEADERS:
            if name in found:
                raise RecordError(f"header {name} appears twice", field=name)
            if raw is None or len(raw) > MAX_HEADER_BYTES:
                raise RecordError(f"header {name} is missing a value or longer than "
                                  f"{MAX_HEADER_BYTES} bytes", field=name)
            try:
                found[name] = raw.decode()
            except UnicodeDecodeError:
                raise RecordError(f"header {name} is not UTF-8", field=name) from None
    missing = [name for name in HEADERS if name not in found]
    if missing:
        raise RecordError(f"not a dead letter: headers {', '.join(missing)} are missing",
                          field=missing[0])
    if len(value) > MAX_RECORD_BYTES:
        raise RecordError(f"dead letter value is {len(value)} bytes, limit {MAX_RECORD_BYTES}",
                          field="value")
    return DeadLetter(topic=found[SOURCE_TOPIC],
                      partition=_number(found, SOURCE_PARTITION),
                      offset=_number(found, SOURCE_OFFSET), key=key, reason=found[REASON],
                      field=found[FIELD] or None, game_id=found[GAME_ID] or None,
                      payload=value)


def _number(found: dict[str, str], name: str) -> int:
    text = found[name]
    if not text.isdigit() or len(text) > 20:
        raise RecordError(f"header {name} is not a non-negative integer: {text[:40]!r}",
                          field=name)
    return int(text)
