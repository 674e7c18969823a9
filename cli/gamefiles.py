"""`to-jsonl` (the seed's canonical-to-JSONL) and `state-pool` (start positions)."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import click

from playstream.cli.common import Summary, progress, reports_errors
from playstream.errors import GameFileError, RecordError
from playstream.gamefiles import open_game_source
from playstream.games import Replay
from playstream.records import GameRecord, validate_record


@contextmanager
def atomic_text_output(output: Path) -> Iterator[IO[str]]:
    """Write a text file under a temporary name and rename it into place only when complete,
    so an interrupted run never leaves a half-written output (the old one stays)."""
    if output.is_dir():
        raise GameFileError("output is a folder", file=str(output))
    if not output.parent.is_dir():
        raise GameFileError("output folder does not exist", file=str(output.parent))
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def valid_records(source: Path, summary: Summary) -> Iterator[tuple[GameRecord, Replay]]:
    """Every valid game of a file, counting the invalid ones by field in ``summary``."""
    with progress(None, source.name, "game") as bar:
        for item in open_game_source(source):
            bar.update(1)
            try:
                if item.error is not None:
                    raise item.error
                yield validate_record(item.data, file=str(source), position=item.position)
            except RecordError as err:
                summary.skip(f"invalid {err.field}")
                continue
            summary.count("games")


@click.command("to-jsonl")
@click.option("--db", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The game database to convert.")
@click.option("--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The JSONL file to write (one validated record per line).")
@reports_errors
def to_jsonl_cmd(db: Path, output: Path) -> None:
    """Convert a game database to JSONL, one validated game per line."""
    summary = Summary("to-jsonl")
    with atomic_text_output(output) as fh:
        for record, _ in valid_records(db, summary):
            fh.write(record.to_json_line() + "\n")
    summary.outputs.append(output)
    summary.echo()


def _parse_moves(text: str) -> list[int]:
    try:
        moves = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise click.BadParameter("expected comma-separated move numbers, e.g. 20,40,60")
    if not moves or moves[0] < 0:
        raise click.BadParameter("expected non-negative move numbers")
    return moves


@click.command("state-pool")
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Take the games from this database.")
@click.option("--jsonl", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Take the games from this JSONL file.")
@click.option("--sample-moves", required=True, help="Move numbers to cut at, e.g. 20,40,60.")
@click.option("--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The JSONL file of start positions to write.")
@reports_errors
def state_pool_cmd(db: Path | None, jsonl: Path | None, sample_moves: str, output: Path) -> None:
    """Positions to start self-play or evaluation from: each is a game's first k moves.

    A position is stored as a move prefix (plus game, board and seat to move), which any
    registered game can replay; no engine-specific state format is needed."""
    if (db is None) == (jsonl is None):
        raise click.UsageError("give exactly one of --db or --jsonl")
    cuts = _parse_moves(sample_moves)
    source = db or jsonl
    assert source is not None
    summary = Summary("state-pool")
    with atomic_text_output(output) as fh:
        for record, replay in valid_records(source, summary):
            for k in (k for k in cuts if k < len(record.moves)):
                fh.write(json.dumps({
                    "game_id": record.game_id, "game": record.game,
                    "game_version": record.game_version, "board_type": record.board_type,
                    "num_players": record.num_players, "move_number": k,
                    "to_move": int(replay.movers[k]), "moves": record.moves[:k]},
                    separators=(",", ":")) + "\n")
                summary.count("positions")
    summary.outputs.append(output)
    summary.echo()
