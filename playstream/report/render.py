"""The report page: one matplotlib figure per question, its numbers in a table under it.

The only module that imports matplotlib (the optional ``report`` extra). Figures are drawn on
``matplotlib.figure.Figure`` objects with the Agg canvas, never through pyplot, so no global
state or display is involved, and each is inlined as a base64 PNG: the page is one file that
opens anywhere, offline, and can be attached to a ticket.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from playstream.report.stats import MAX_MOVE_BUCKETS, ConfigStats, ReportStats

matplotlib.use("Agg")
DPI = 96
MAX_TABLE_ROWS = 400
MAX_ACTIONS_LISTED = 50
MAX_REASONS = 20

Cell = str | int | float | None


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
    note: str = ""


@dataclass(frozen=True)
class DrawnFigure:
    """One figure of the page: ``ident`` names its PNG file and its ``<figure>`` element."""

    ident: str
    title: str
    png: bytes
    tables: tuple[Table, ...]


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _figure(width: float = 7.0, height: float = 3.6, cols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, cols)


# --- the figures ---------------------------------------------------------------------------

def configurations_figure(stats: ReportStats) -> DrawnFigure:
    keys = list(stats.configs)
    fig, (left, right) = _figure(cols=2)
    left.barh(keys, [stats.configs[k].rows for k in keys], color="tab:blue")
    left.set_xlabel("rows")
    right.barh(keys, [stats.configs[k].games for k in keys], color="tab:orange")
    right.set_xlabel("games")
    right.set_yticks([])
    fig.suptitle("Current rows and games per configuration")
    table = Table(("configuration", "files", "rows", "games"),
                  [(k, len(c.files), c.rows, c.games) for k, c in stats.configs.items()])
    return DrawnFigure("configurations", "Rows and games per configuration", _png(fig),
                       (table,))


def versions_figure(stats: ReportStats) -> DrawnFigure:
    fig, (left, right) = _figure(cols=2)
    for key in sorted({v.config_key for v in stats.versions}):
        points = [v for v in stats.versions if v.config_key == key]
        when = [v.created_at for v in points]
        left.plot(when, [v.rows for v in points], marker="o", label=key)
        right.plot(when, [v.games for v in points], marker="o", label=key)
    left.set_ylabel("rows")
    right.set_ylabel("games")
    for ax in (left, right):
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.set_xlabel("published (UTC)")
    if stats.versions:
        left.legend(fontsize="small")
    else:
        left.text(0.5, 0.5, "no manifest found", ha="center", transform=left.transAxes)
    fig.suptitle("Dataset versions over time")
    table = Table(("configuration", "version", "published", "rows", "games", "current"),
                  [(v.config_key, v.version, v.created_at.isoformat(), v.rows, v.games,
                    "yes" if v.current else "") for v in stats.versions],
                  note="From each version's manifest.json (versions pruned by the finalizer "
                       "are gone).")
    return DrawnFigure("versions", "Rows and games per dataset version", _png(fig), (table,))


def lengths_figure(c: ConfigStats) -> DrawnFigure:
    lengths = c.game_lengths()
    fig, ax = _figure()
    ax.bar(list(lengths), list(lengths.values()), width=1.0, color="tab:blue")
    ax.set_xlabel("moves in the game")
    ax.set_ylabel("games")
    ax.set_title(f"Game length ({c.key})")
    total = sum(lengths.values())
    mean = sum(k * v for k, v in lengths.items()) / total if total else 0.0
    table = Table(("moves", "games"), list(lengths.items()),
                  note=f"{total} games, mean {mean:.1f} moves (a game's highest move number "
                       "in the data, plus one).")
    return DrawnFigure(f"game-lengths-{c.key}", f"Game length: {c.key}", _png(fig), (table,))


def outcomes_figure(c: ConfigStats) -> DrawnFigure:
    out = c.outcomes()
    seats = list(out["wins_by_seat"])
    fig, ax = _figure()
    ax.bar([f"seat {s}" for s in seats], [out["wins_by_seat"][s] for s in seats],
           color="tab:green")
    ax.set_ylabel("games won")
    ax.set_title(f"Outcomes by seat ({c.key})")
    table = Table(("seat", "wins", "mean value"),
                  [(s, out["wins_by_seat"][s], out["mean_value_by_seat"][s]) for s in seats],
                  note=f"{out['games_with_opening_row']} games with their opening row (move 0),"
                       f" read from values_mp; first seat win rate "
                       f"{out['first_seat_win_rate']}; shared top or drawn "
                       f"{out['shared_or_drawn']}.")
    return DrawnFigure(f"outcomes-{c.key}", f"Outcomes by seat: {c.key}", _png(fig), (table,))


def values_figure(c: ConfigStats) -> DrawnFigure:
    centres, counts = c.value_histogram()
    fig, ax = _figure()
    ax.bar(centres, counts, width=0.045, color="tab:purple")
    ax.set_xlabel("value target (seat to move)")
    ax.set_ylabel("rows")
    ax.set_title(f"Value targets ({c.key})")
    table = Table(("value bin centre", "rows"),
                  [(x, n) for x, n in zip(centres, counts) if n],
                  note=f"Bins of 0.05; {c.values_out_of_range} rows outside [-1, 1].")
    return DrawnFigure(f"values-{c.key}", f"Value-target distribution: {c.key}", _png(fig),
                       (table,))


def entropy_figure(c: ConfigStats) -> DrawnFigure:
    by_move = c.entropy_by_move()
    rows = c.entropy_rows
    fig, ax = _figure()
    ax.plot(list(by_move), list(by_move.values()), color="tab:red")
    ax.set_xlabel("move number")
    ax.set_ylabel("mean policy entropy (nats)")
    ax.set_title(f"Policy entropy by move number ({c.key})")
    table = Table(("move", "mean entropy", "rows"),
                  [(m, round(e, 4), int(rows[m])) for m, e in by_move.items()],
                  note="Entropy of each row's policy target; 0 for one-hot targets. Move "
                       f"{MAX_MOVE_BUCKETS - 1} also holds every later move.")
    return DrawnFigure(f"entropy-{c.key}", f"Policy entropy by move number: {c.key}",
                       _png(fig), (table,))


def moves_figure(c: ConfigStats) -> DrawnFigure:
    grid = c.move_grid()
    note = (f"The played move is each row's highest-probability policy entry; "
            f"{c.rows_without_policy} rows have no policy entries.")
    if grid is not None:
        fig, ax = _figure(width=5.0, height=4.4)
        image = ax.imshow(grid, cmap="viridis", origin="upper")
        fig.colorbar(image, ax=ax, label="moves played")
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        ax.set_title(f"Moves over the board ({c.key})")
        table = Table(("row",) + tuple(str(x) for x in range(grid.shape[1])),
                      [(y,) + tuple(int(v) for v in grid[y]) for y in range(grid.shape[0])],
                      note=note)
        return DrawnFigure(f"moves-{c.key}", f"Moves over the board: {c.key}", _png(fig),
                           (table,))
    counts = c.move_counts
    fig, ax = _figure()
    ax.bar(range(counts.size), counts, width=1.0, color="tab:blue")
    ax.set_xlabel("policy index")
    ax.set_ylabel("moves played")
    ax.set_title(f"Moves by action index ({c.key})")
    top = sorted(((int(n), i) for i, n in enumerate(counts.tolist()) if n), reverse=True)
    table = Table(("policy index", "moves"),
                  [(i, n) for n, i in top[:MAX_ACTIONS_LISTED]],
                  note=note + f" Policy size {c.config.policy_size} is not height x width "
                              f"({c.config.height} x {c.config.width}), so indices are "
                              f"actions, not cells; the {MAX_ACTIONS_LISTED} most played.")
    return DrawnFigure(f"moves-{c.key}", f"Moves by action index: {c.key}", _png(fig),
                       (table,))


def duplicates_figure(c: ConfigStats) -> DrawnFigure:
    repeated, groups = c.duplicates()
    fig, ax = _figure()
    unique = c.games - repeated
    ax.bar(["distinct move sequences", "repeated games"], [unique, repeated],
           color=["tab:blue", "tab:red"])
    ax.set_ylabel("games")
    ax.set_title(f"Duplicate move sequences ({c.key})")
    summary = Table(("games", "distinct sequences", "duplicate games"),
                    [(c.games, unique, repeated)],
                    note="A duplicate game repeats another game's played moves under a "
                         "different game_id.")
    listed = Table(("copies", "moves", "game ids"),
                   [(g.copies, g.moves, ", ".join(g.game_ids)) for g in groups])
    return DrawnFigure(f"duplicates-{c.key}", f"Duplicate move sequences: {c.key}",
                       _png(fig), (summary, listed))


def dead_letters_figure(reasons: dict[str, int], topic: str) -> DrawnFigure:
    top = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = top[:MAX_REASONS]
    rest = sum(n for _, n in top[MAX_REASONS:])
    fig, ax = _figure(height=max(2.4, 0.35 * len(shown) + 1.2))
    labels = [r if len(r) <= 60 else r[:57] + "..." for r, _ in shown]
    ax.barh(labels[::-1], [n for _, n in shown][::-1], color="tab:red")
    ax.set_xlabel("dead letters")
    ax.set_title(f"Dead-letter reasons ({topic})")
    if not shown:
        ax.text(0.5, 0.5, "the topic is empty", ha="center", transform=ax.transAxes)
    table = Table(("reason", "messages"), list(shown) + ([("(other reasons)", rest)]
                                                        if rest else []),
                  note=f"{sum(reasons.values())} messages on {topic}.")
    return DrawnFigure("dead-letters", "Dead-letter reasons", _png(fig), (table,))


def draw_all(stats: ReportStats, dlq_topic: str | None = None) -> list[DrawnFigure]:
    """Every figure of the page, in page order."""
    figures = [configurations_figure(stats), versions_figure(stats)]
    for c in stats.configs.values():
        figures += [lengths_figure(c), outcomes_figure(c), values_figure(c),
                    entropy_figure(c), moves_figure(c), duplicates_figure(c)]
    if stats.dead_letter_reasons is not None and dlq_topic is not None:
        figures.append(dead_letters_figure(dict(stats.dead_letter_reasons), dlq_topic))
    return figures


# --- the page ------------------------------------------------------------------------------

_STYLE = """body{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#222}
figure{margin:2rem 0;border-top:1px solid #ccc;padding-top:1rem}img{max-width:100%}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.15rem .5rem;text-align:right}
th{background:#f4f4f4}p.note{font-size:.85rem;color:#555}"""


def _table_html(ident: str, table: Table) -> str:
    def cell(value: Cell) -> str:
        return "" if value is None else html.escape(str(value))

    shown = table.rows[:MAX_TABLE_ROWS]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in shown)
    cut = (f"<p class=\"note\">First {MAX_TABLE_ROWS} of {len(table.rows)} rows.</p>"
           if len(table.rows) > MAX_TABLE_ROWS else "")
    note = f"<p class=\"note\">{html.escape(table.note)}</p>" if table.note else ""
    return (f"<table class=\"numbers\" data-figure=\"{html.escape(ident)}\">"
            f"<tr>{head}</tr>{body}</table>{cut}{note}")


def page(stats: ReportStats, figures: Sequence[DrawnFigure]) -> str:
    """The self-contained HTML page: styles inline, every PNG as a data: URL."""
    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
             f"<title>playstream report: {html.escape(str(stats.source))}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>playstream dataset report</h1><p>{html.escape(str(stats.source))} "
             f"&middot; generated {made}</p>"]
    for f in figures:
        data = base64.b64encode(f.png).decode("ascii")
        tables = "".join(_table_html(f.ident, t) for t in f.tables)
        parts.append(f"<figure id=\"{html.escape(f.ident)}\"><h2>{html.escape(f.title)}</h2>"
                     f"<img alt=\"{html.escape(f.title)}\" src=\"data:image/png;base64,{data}\">"
                     f"<figcaption>{tables}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_pngs(figures: Sequence[DrawnFigure], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for f in figures:
        path = folder / f"{f.ident}.png"
        path.write_bytes(f.png)
        written.append(path)
    return written
