"""What every command shares: error reporting, progress bars and the closing summary."""
from __future__ import annotations

import functools
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, NoReturn, TypeVar

import click
from tqdm import tqdm

from playstream.errors import GameFileError, PlaystreamError
from playstream.rejects import Reject

F = TypeVar("F", bound=Callable[..., Any])
EXIT_DATA_ERROR = 1
EXIT_USAGE = 2
REJECTS_SHOWN = 5
KAFKA_CLIENTS = ("kafka", "aiokafka", "faust", "mode")


@contextmanager
def needs_extra(command: str, extra: str, packages: tuple[str, ...]) -> Iterator[None]:
    """Around the imports of a command that needs an optional extra: without it, one line
    naming it and exit 2, instead of a traceback at start-up of every command."""
    try:
        yield
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in packages:
            raise
        click.echo(f"error: `playstream {command}` needs the {extra} extra ({err.name} is "
                   f"not installed): pip install 'playstream[{extra}]'", err=True)
        sys.exit(EXIT_USAGE)


def kafka_extra(command: str) -> ContextManager[None]:
    """`needs_extra` for the Kafka clients (a broker command)."""
    return needs_extra(command, "kafka", KAFKA_CLIENTS)


def stop_quietly_on_broken_pipe() -> NoReturn:
    """The reader of stdout went away (``playstream inspect X | head``): stop with exit 0
    and no message, as Unix tools do. stdout is pointed at /dev/null first, so the
    interpreter's final flush of the buffered rest does not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(0)


def reports_errors(fn: F) -> F:
    """Typed errors become one clear line on stderr and exit code 1, not a traceback; a
    closed stdout ends the command quietly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            stop_quietly_on_broken_pipe()
        except PlaystreamError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_DATA_ERROR)
        except OSError as err:
            where = f" ({err.filename})" if err.filename else ""
            click.echo(f"error: {err.strerror or err}{where}", err=True)
            sys.exit(EXIT_DATA_ERROR)

    return wrapper  # type: ignore[return-value]


class RejectLog:
    """Where a command reports the records it skips: the first REJECTS_SHOWN on stderr (at
    any log level: a skipped record is never silent), every one in ``path`` as JSON lines."""

    def __init__(self, path: Path | None, *, shown: int = REJECTS_SHOWN) -> None:
        self.path = path
        self.shown = shown
        self.count = 0
        try:
            self._fh = open(path, "w", encoding="utf-8") if path is not None else None
        except OSError as err:
            raise GameFileError(f"cannot write the rejects file: {err.strerror}",
                                file=str(path)) from None

    def add(self, reject: Reject) -> None:
        self.count += 1
        if self.count <= self.shown:
            click.echo(f"rejected: {reject}", err=True)
        if self._fh is not None:
            self._fh.write(reject.to_json() + "\n")

    def close(self) -> None:
        """Close the file and say where the rest is."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        more = self.count - self.shown
        if more > 0:
            where = (f"all {self.count} in {self.path}" if self.path is not None
                     else "give --rejects FILE.jsonl to list them all")
            click.echo(f"rejected: ... and {more} more ({where})", err=True)

    def __enter__(self) -> "RejectLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(total: int | None, desc: str, unit: str, *, enabled: bool = True) -> tqdm:
    """A progress bar on stderr, only when stderr is a terminal (tqdm's ``disable=None``):
    a log file or a pipe gets the summary and the log lines, not bar redraws."""
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True,
                file=sys.stderr, dynamic_ncols=True, leave=False)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


@dataclass
class Summary:
    """The closing lines of a long command: what was done, what was skipped and why."""

    title: str
    started: float = field(default_factory=time.monotonic)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    outputs: list[Path | str] = field(default_factory=list)   # files, or object URLs

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def lines(self) -> Iterator[str]:
        secs = time.monotonic() - self.started
        parts = [f"{k}={v}" for k, v in self.counts.items()]
        parts.append(f"skipped={sum(self.skipped.values())}")
        parts.append(f"seconds={secs:.2f}")
        size = sum(p.stat().st_size for p in self.outputs
                   if isinstance(p, Path) and p.is_file())
        if any(isinstance(p, Path) for p in self.outputs):
            parts.append(f"size={human_bytes(size)}")
        yield f"{self.title}: " + " ".join(parts)
        for reason, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]):
            yield f"  skipped {n}: {reason}"
        for p in self.outputs:
            yield f"  wrote {p}"

    def echo(self) -> None:
        for line in self.lines():
            click.echo(line)


_DURATION = re.compile(r"^(?P<value>[0-9]{1,9}(?:\.[0-9]{1,6})?)(?P<unit>ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION_S = 10 * 365 * 86400


class Duration(click.ParamType):
    """``500ms``, ``60s``, ``5m``, ``2h``, ``7d`` (a number and one unit) as seconds."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower()
        m = _DURATION.match(text) if len(text) <= 20 else None
        if m is None:
            self.fail(f"{str(value)[:40]!r} is not a duration: give a number and a unit, "
                      "ms, s, m, h or d (500ms, 60s, 5m, 2h, 7d)", param, ctx)
        seconds = float(m["value"]) * _UNIT_SECONDS[m["unit"]]
        if seconds > MAX_DURATION_S or (seconds == 0 and not self.allow_zero):
            self.fail(f"{value} is out of range: at most 10 years"
                      + ("" if self.allow_zero else ", and more than 0"), param, ctx)
        return seconds


class Timestamp(click.ParamType):
    """An ISO 8601 time with a time zone (``2026-11-24T10:00:00+00:00``)."""

    name = "timestamp"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time", param, ctx)
        if when.tzinfo is None:
            self.fail(f"{value!r} has no time zone (add +00:00 or Z)", param, ctx)
        return when
