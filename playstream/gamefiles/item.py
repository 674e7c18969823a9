"""The unit every game file yields: one raw record and the position it came from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from playstream.errors import RecordError


@dataclass(frozen=True)
class SourceItem:
    """One record as read: its decoded mapping, or the error that stopped decoding it.

    ``position`` is 1-based and stable for a file that is only appended to, so a chunk can
    name the record range it holds and a rerun can skip what is already sealed.
    """

    position: int
    data: dict[str, Any] | None
    error: RecordError | None
