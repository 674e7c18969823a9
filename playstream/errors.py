"""Typed errors that carry where the problem is.

Every error a user can see names what was wrong and where: the file, the offset or line,
the game_id and the field. The message is built once here so that every caller renders the
same context the same way, and logs can use ``err.context`` as structured fields.
"""
from __future__ import annotations

from typing import Any


class PlaystreamError(Exception):
    """Base class: a message plus structured context (file, offset, game_id, field, ...)."""

    def __init__(self, message: str, **context: Any) -> None:
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}
        super().__init__(self._render())

    def _render(self) -> str:
        where = " ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{where}: {self.message}" if where else self.message


class RecordError(PlaystreamError):
    """A game record is malformed: wrong type, out of range, illegal move, bad outcome."""

    def __init__(self, message: str, *, field: str | None = None, game_id: str | None = None,
                 **context: Any) -> None:
        self.field = field
        self.game_id = game_id
        super().__init__(message, game_id=game_id, field=field, **context)


class UnknownGameError(RecordError):
    """The record names a game or board type that no registered game provides."""


class IllegalMoveError(RecordError):
    """A move is off the board, on an occupied cell, or played after the game ended."""


class DatasetError(PlaystreamError):
    """An NPZ dataset or chunk fails a check: names the array and, where it applies, the row."""

    def __init__(self, message: str, *, path: str | None = None, array: str | None = None,
                 row: int | None = None, check: str | None = None, **context: Any) -> None:
        self.path = path
        self.array = array
        self.row = row
        self.check = check
        super().__init__(message, path=path, array=array, row=row, check=check, **context)


class ConfigMismatchError(PlaystreamError):
    """Chunks or datasets of different configurations (feature version, board, ...) would mix."""


class FeatureVersionError(PlaystreamError):
    """A feature version is unknown, or no conversion between two versions is derivable."""


class GameFileError(PlaystreamError):
    """A SQLite or JSONL game file is missing, corrupt, or of a foreign schema."""


class ChunkError(PlaystreamError):
    """A chunk name or range is invalid, or a seal would overlap a sealed range."""


class LoaderError(PlaystreamError):
    """The training loader cannot do what it was asked: a source without rows, a resume
    state from another epoch plan, a version that is no longer on disk."""
