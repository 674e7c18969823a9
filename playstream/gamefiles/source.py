"""A game file as an ordered stream of raw records, each with the position it came from."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from playstream.errors import GameFileError, RecordError

@dataclass(frozen=True)
class SourceItem:
    """One record as read: its decoded mapping, or the error that stopped decoding it.

    ``position`` is 1-based and stable for a file that is only appended to, so a chunk can
    name the record range it holds and a rerun can skip what is already sealed.
    """

    position: int
    data: dict[str, Any] | None
    error: RecordError | None

def open_game_source(path: str | Path, *, start: int = 1) -> Iterator[SourceItem]:
    """Iterate a `.jsonl` or `.db` game file from record ``start`` on."""
    from playstream.gamefiles.jsonl import iter_jsonl
    from playstream.gamefiles.sqlite import iter_database

    p = Path(path)
    if not p.exists():
        raise GameFileError("game file does not exist", file=str(p))
    if p.suffix == ".jsonl":
        return iter_jsonl(p, start=start)
    if p.suffix == ".db":
        return iter_database(p, start=start)
    raise GameFileError("unknown game file type: expected .jsonl or .db", file=str(p))
