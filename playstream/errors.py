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


class KafkaConfigError(PlaystreamError):
    """A Kafka connection setting is missing, invalid or inconsistent: names the field (and,
    when the caller knows it, where the value came from: command line, environment, file)."""

    def __init__(self, message: str, *, field: str | None = None, source: str | None = None,
                 **context: Any) -> None:
        self.field = field
        self.source = source
        super().__init__(message, field=field, source=source, **context)


class KafkaConnectError(PlaystreamError):
    """A broker could not be reached or refused us. The message is one line naming the
    listener (bootstrap address), the security protocol and the SASL mechanism; it never holds
    a password. The parts are also attributes, for logs and exit codes."""

    def __init__(self, message: str, *, bootstrap: str, security_protocol: str,
                 sasl_mechanism: str | None = None, reason: str = "") -> None:
        self.bootstrap = bootstrap
        self.security_protocol = security_protocol
        self.sasl_mechanism = sasl_mechanism
        self.reason = reason
        super().__init__(message)


class KafkaAuthError(KafkaConnectError):
    """SASL authentication failed: wrong user or password, or a mechanism the broker lacks."""


class KafkaTLSError(KafkaConnectError):
    """The TLS handshake failed: untrusted or mismatched certificate, rejected client cert."""


class StorageError(PlaystreamError):
    """A storage operation failed: names the store (``url``), the object ``name`` and the
    ``operation`` (list, read, create_if_absent, ...), plus server details where there are any."""

    def __init__(self, message: str, *, url: str | None = None, name: str | None = None,
                 operation: str | None = None, **context: Any) -> None:
        self.url = url
        self.name = name
        self.operation = operation
        super().__init__(message, url=url, name=name, operation=operation, **context)


class InvalidObjectNameError(StorageError):
    """An object name or prefix is not a safe store-relative POSIX name."""


class ObjectNotFoundError(StorageError):
    """The named object does not exist in the store."""


def error_text(err: BaseException) -> str:
    """``Type: message`` of any exception, once: some clients (kafka-python) already put the
    type at the start of ``str(err)``, and a line that says ``KafkaTimeoutError:
    KafkaTimeoutError: ...`` reads as two errors. A `PlaystreamError` is its own message and
    context: its type adds nothing."""
    if isinstance(err, PlaystreamError):
        return str(err)
    name, text = type(err).__name__, str(err)
    return text if text == name or text.startswith(f"{name}: ") else f"{name}: {text}"


class ConfigFileError(PlaystreamError):
    """The configuration file is too large, not TOML, or names an unknown table or key."""

    def __init__(self, message: str, *, file: str, line: int | None = None,
                 key: str | None = None, **context: Any) -> None:
        self.file = file
        self.line = line
        self.key = key
        super().__init__(message, file=file, line=line, key=key, **context)


class EmptyResultError(PlaystreamError):
    """An export or compaction would publish no rows: every record was skipped (invalid, or
    of another configuration) or every row dropped. Not a success unless asked for."""


class LoaderError(PlaystreamError):
    """The training loader cannot do what it was asked: a source without rows, a resume
    state from another epoch plan, a version that is no longer on disk."""
