"""JSON-lines game files: the seed's shape, one finished game per line."""
from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Iterator

from playstream.errors import GameFileError, RecordError
from playstream.gamefiles.item import SourceItem
from playstream.records import MAX_RECORD_BYTES, GameRecord, decode_json_line


def iter_jsonl(path: Path, *, start: int = 1) -> Iterator[SourceItem]:
    """Yield every line from ``start`` (1-based) as a SourceItem; blank lines are skipped but
    still counted, so positions always equal line numbers. A line longer than the record
    limit is reported without being read whole into memory."""
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise GameFileError(f"cannot open: {err.strerror}", file=str(path)) from None
    with fh:
        lineno = 0
        while True:
            line = fh.readline(MAX_RECORD_BYTES + 1)
            if not line:
                return
            lineno += 1
            if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the long line
                    line = fh.readline(1 << 20)
                if lineno >= start:
                    yield SourceItem(lineno, None, RecordError(
                        f"line longer than the record limit of {MAX_RECORD_BYTES} bytes",
                        field="record", file=str(path), line=lineno))
                continue
            if lineno < start or not line.strip():
                continue
            try:
                yield SourceItem(lineno, decode_json_line(line, file=str(path), line=lineno), None)
            except RecordError as err:
                yield SourceItem(lineno, None, err)


class JsonlWriter:
    """Appends records, one line each, flushed per game so that a killed self-play worker
    loses at most the game it was writing."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        try:
            self._fh = open(self.path, "a", encoding="utf-8")
        except OSError as err:
            raise GameFileError(f"cannot open for writing: {err.strerror}",
                                file=str(self.path)) from None

    def write(self, record: GameRecord) -> None:
        self._fh.write(record.to_json_line() + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
