"""A skipped record, described so that a user can find it and fix it.

Every command that skips records (export, publish, validate of a game file) reports each one
with where it is (file and line, database seq, or topic/partition/offset), its game_id when
known, the field and the reason; the CLI prints the first few and writes all of them to a
rejects file (`--rejects FILE.jsonl`), one JSON object per line.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from playstream.errors import RecordError

# Context keys of a RecordError that say where the record is (in this order when rendered).
WHERE_KEYS = ("file", "line", "seq", "topic", "partition", "offset")
_INDEX = re.compile(r"\[[0-9]+\]")


def field_family(field: str | None) -> str:
    """``moves[17]`` → ``moves``: summaries count skips by field, not by move index (the
    index is in the rejects)."""
    return _INDEX.sub("", field or "record")


@dataclass(frozen=True)
class Reject:
    """One skipped record: ``where`` holds the WHERE_KEYS that apply."""

    where: dict[str, Any]
    game_id: str | None
    field: str | None
    reason: str

    @classmethod
    def from_error(cls, err: RecordError, **where: Any) -> "Reject":
        """``where`` fills in what the error does not carry itself."""
        context = {**where, **err.context}
        return cls({k: context[k] for k in WHERE_KEYS if context.get(k) is not None},
                   err.game_id, err.field, err.message)

    def to_json(self) -> str:
        return json.dumps({**self.where, "game_id": self.game_id, "field": self.field,
                           "reason": self.reason}, separators=(",", ":"))

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.where.items()]
        parts += [f"{k}={v}" for k, v in (("game_id", self.game_id), ("field", self.field))
                  if v is not None]
        return f"{' '.join(parts)}: {self.reason}"
