"""What every command shares: error reporting, progress bars and the closing summary."""
from __future__ import annotations

import functools
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import click
from tqdm import tqdm

from playstream.errors import PlaystreamError

F = TypeVar("F", bound=Callable[..., Any])
EXIT_DATA_ERROR = 1
EXIT_USAGE = 2
KAFKA_CLIENTS = ("kafka", "aiokafka", "faust", "mode")


@contextmanager
def kafka_extra(command: str) -> Iterator[None]:
    """Around the imports of a command that needs the broker: without the ``kafka`` extra,
    one line naming it and exit 2, instead of a traceback at start-up of every command."""
    try:
        yield
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in KAFKA_CLIENTS:
            raise
        click.echo(f"error: `playstream {command}` needs the Kafka extra ({err.name} is not "
                   "installed): pip install 'playstream[kafka]'", err=True)
        sys.exit(EXIT_USAGE)


def reports_errors(fn: F) -> F:
    """Typed errors become one clear line on stderr and exit code 1, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PlaystreamError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_DATA_ERROR)
        except OSError as err:
            where = f" ({err.filename})" if err.filename else ""
            click.echo(f"error: {err.strerror or err}{where}", err=True)
            sys.exit(EXIT_DATA_ERROR)

    return wrapper  # type: ignore[return-value]


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
