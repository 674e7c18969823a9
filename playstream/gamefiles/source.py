"""A game file as an ordered stream of raw records, chosen by the file's suffix."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from playstream.errors import GameFileError
from playstream.gamefiles.item import SourceItem
from playstream.gamefiles.jsonl import iter_jsonl
from playstream.gamefiles.sqlite import iter_database


def open_game_source(path: str | Path, *, start: int = 1) -> Iterator[SourceItem]:
    """Iterate a `.jsonl` or `.db` game file from record ``start`` on."""
    p = Path(path)
    if not p.exists():
        raise GameFileError("game file does not exist", file=str(p))
    if p.suffix == ".jsonl":
        return iter_jsonl(p, start=start)
    if p.suffix == ".db":
        return iter_database(p, start=start)
    raise GameFileError("unknown game file type: expected .jsonl or .db", file=str(p))


def position_context(path: str | Path, position: int) -> dict[str, str | int]:
    """Where record ``position`` of a game file is, as error context: the line of a JSONL
    file, the ``seq`` of a game database."""
    return {"file": str(path), ("line" if Path(path).suffix == ".jsonl" else "seq"): position}
