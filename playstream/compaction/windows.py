"""How many of the newest rows a training dataset keeps.

Training on every row ever produced lets stale self-play from weak early networks dominate;
training on a fixed window throws away too much while data is scarce. KataGo's power-law
window grows sub-linearly with the data: it starts as "all rows" up to ``min_rows`` and then
expands by ``expand_per_row`` rows per new row at first, tapering off with ``exponent``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from playstream.errors import PlaystreamError

MAX_SPEC_CHARS = 200


@runtime_checkable
class WindowPolicy(Protocol):
    """Maps the number of usable rows N to the number of newest rows to keep (<= N)."""

    def size(self, n_rows: int) -> int: ...


@dataclass(frozen=True)
class AllRows:
    """Keep everything: for small stores and for rebuilding a dataset from scratch."""

    def size(self, n_rows: int) -> int:
        return n_rows


@dataclass(frozen=True)
class FixedWindow:
    """Keep at most ``rows`` newest rows (Lc0 / minigo style)."""

    rows: int

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise PlaystreamError(f"a fixed window needs at least 1 row, not {self.rows}",
                                  field="window")

    def size(self, n_rows: int) -> int:
        return min(n_rows, self.rows)


@dataclass(frozen=True)
class KataGoWindow:
    """W(N) = (N^e - M^e) / (e * M^(e-1)) * r + M for N > M, and N for N <= M.

    The shift and scale make W(M) = M and dW/dN = r at N = M, so the window is continuous
    with "all rows" and grows by r rows per new row at the hand-over, then tapers off.
    """

    exponent: float = 0.65
    expand_per_row: float = 0.4
    min_rows: int = 250_000

    def __post_init__(self) -> None:
        if not 0.0 < self.exponent <= 1.0:
            raise PlaystreamError(f"the window exponent must be in (0, 1], not {self.exponent}",
                                  field="window")
        if not 0.0 <= self.expand_per_row <= 1.0:
            raise PlaystreamError("expand_per_row must be in [0, 1], "
                                  f"not {self.expand_per_row}", field="window")
        if self.min_rows < 1:
            raise PlaystreamError(f"min_rows must be at least 1, not {self.min_rows}",
                                  field="window")

    def size(self, n_rows: int) -> int:
        e, r, m = self.exponent, self.expand_per_row, float(self.min_rows)
        if n_rows <= self.min_rows:
            return n_rows
        w = (n_rows ** e - m ** e) / (e * m ** (e - 1.0)) * r + m
        return min(n_rows, int(math.floor(w)))



_KATAGO_PARAM = re.compile(r"^\s*(?P<key>[a-z]+)\s*=\s*(?P<value>[^,=]+?)\s*$")
_KATAGO_FIELDS = {"e": ("exponent", float), "r": ("expand_per_row", float),
                  "m": ("min_rows", int)}


def parse_window(text: str) -> AllRows | FixedWindow | KataGoWindow:
    """Parse ``all``, ``<rows>``, ``katago`` or ``katago:e=0.65,r=0.4,m=250000`` (any subset
    of e, r, m; the rest keep KataGo's defaults)."""
    spec = text.strip().lower()
    if not spec or len(spec) > MAX_SPEC_CHARS:
        raise PlaystreamError("a window is 'all', a row count, 'katago' or "
                              "'katago:e=..,r=..,m=..'", field="window", value=text[:40])
    if spec == "all":
        return AllRows()
    if spec.isdigit():
        return FixedWindow(int(spec))
    head, _, params = spec.partition(":")
    if head != "katago":
        raise PlaystreamError(f"unknown window {text!r}: expected 'all', a row count, "
                              "'katago' or 'katago:e=..,r=..,m=..'", field="window")
    kwargs: dict[str, float | int] = {}
    for part in params.split(",") if params else []:
        m = _KATAGO_PARAM.match(part)
        if not m or m["key"] not in _KATAGO_FIELDS:
            raise PlaystreamError(f"bad KataGo window parameter {part.strip()!r}: expected "
                                  "e=<exponent>, r=<expand per row> or m=<min rows>",
                                  field="window")
        name, kind = _KATAGO_FIELDS[m["key"]]
        if name in kwargs:
            raise PlaystreamError(f"KataGo window parameter {m['key']!r} given twice",
                                  field="window")
        try:
            kwargs[name] = kind(m["value"].replace("_", ""))
        except ValueError:
            raise PlaystreamError(f"KataGo window parameter {m['key']}={m['value']!r} is not "
                                  f"a{'n integer' if kind is int else ' number'}",
                                  field="window") from None
    return KataGoWindow(**kwargs)  # type: ignore[arg-type]
