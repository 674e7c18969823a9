"""`playstream export` (game files → chunks → dataset) and `playstream compact` (chunks →
dataset). Export is incremental: a rerun resumes after the last sealed chunk of each file,
so a killed export loses nothing and a grown file costs only its new games."""
from __future__ import annotations

import re
from pathlib import Path

import click

from playstream.chunks import ChunkOrigin, ChunkStore, ChunkWriter, file_stream_id
from playstream.cli.common import RejectLog, Summary, progress, reports_errors
from playstream.cli.options import (EncoderChoice, StoreLocation, allow_empty_option,
                                    chunk_rows_option, chunk_store_option, compaction_options,
                                    encoder_options, game_option, progress_option,
                                    rejects_option)
from playstream.compaction.compact import CompactOptions, CompactionResult, compact
from playstream.dataset.config import encoder_scope
from playstream.encoders.cache import ExportCache
from playstream.encoders.versions import ExportSettings
from playstream.errors import EmptyResultError, GameFileError
from playstream.gamefiles import open_game_source, position_context
from playstream.games import MAX_SEATS
from playstream.incremental import AddResult, IncrementalExporter, RecordFilter
from playstream.records import GameRecord
from playstream.rejects import Reject, field_family

CONFIG_TAG = re.compile(
    r"(?:^|[^a-z0-9])(?P<board>[a-z][a-z0-9]*)_(?P<players>[234])p(?:[^a-z0-9]|$)")


def discover_game_files(root: Path, board_type: str, num_players: int) -> list[Path]:
    """Game files under ``root`` by the documented convention: every ``*.db`` and ``*.jsonl``
    below it (hidden folders and ``*.chunks`` folders excluded). A file whose name carries a
    configuration tag ``<board>_<n>p`` (``<board>_3p_node7.db``) is taken only for that
    configuration; untagged files are read and filtered record by record."""
    if not root.is_dir():
        raise GameFileError("discovery folder does not exist", file=str(root))
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") or p.endswith(".chunks") for p in rel[:-1]):
            continue
        if path.suffix not in (".db", ".jsonl") or not path.is_file():
            continue
        tag = CONFIG_TAG.search(path.name)
        if tag and (tag["board"], int(tag["players"])) != (board_type, num_players):
            continue
        found.append(path)
    return found


OTHER_CONFIGURATION = "other configuration"


def config_filter(game: str, board_type: str, num_players: int) -> RecordFilter:
    """Skips a record of another configuration, naming the first field that differs."""
    wanted = {"game": game, "board_type": board_type, "num_players": num_players}

    def accept(record: GameRecord) -> tuple[str, str] | None:
        for name, value in wanted.items():
            if getattr(record, name) != value:
                return name, (f"{OTHER_CONFIGURATION}: {name} is {getattr(record, name)!r}, "
                              f"the export's is {value!r}")
        return None

    return accept


def _reject(result: AddResult, where: dict[str, str | int]) -> Reject:
    if result.invalid is not None:
        return Reject.from_error(result.invalid, **where)
    assert result.skipped is not None
    return Reject(where, result.game_id, result.field, result.skipped)


def _skip_reason(result: AddResult) -> str:
    """The summary's bucket: the field for invalid records, one bucket for other
    configurations (their exact values are in the rejects)."""
    if result.invalid is not None:
        return f"invalid {field_family(result.invalid.field)}"
    assert result.skipped is not None
    return (OTHER_CONFIGURATION if result.skipped.startswith(OTHER_CONFIGURATION)
            else result.skipped)


def compact_with_progress(store: ChunkStore, config_key: str | None, output: Path | str,
                          options: CompactOptions, summary: Summary, *, allow_empty: bool,
                          show_progress: bool) -> CompactionResult:
    """Compact with a bar of the rows written; an empty result without ``--allow-empty``
    fails with this run's skip counts by reason as well as the compaction's own."""
    try:
        with progress(None, "compact", "row", enabled=show_progress) as bar:
            return compact(store, config_key, output, options, allow_empty=allow_empty,
                           progress=lambda done: bar.update(done - bar.n))
    except EmptyResultError as err:
        here = "; ".join(f"skipped {n}: {r}" for r, n in summary.skipped.items())
        raise EmptyResultError(err.message + (f"; this run {here}" if here else ""),
                               **err.context) from None


def summarise_compaction(summary: Summary, result: CompactionResult,
                         options: CompactOptions) -> None:
    summary.count("rows", result.rows)
    summary.count("dataset_games", result.games)
    if result.duplicate_moves:
        summary.count("duplicate_moves", result.duplicate_moves)
        dropped = ("dropped" if options.drop_duplicate_moves
                   else "kept; --drop-duplicate-moves drops them")
        click.echo(f"warning: {result.duplicate_moves} games repeat the move sequence of an "
                   f"older game under another game_id ({dropped})", err=True)
    if result.val_rows:
        summary.count("train_rows", result.train_rows)
        summary.count("val_rows", result.val_rows)
    for path, reason in result.quarantined:
        summary.skip(f"chunk quarantined: {reason}")
    summary.outputs.extend(result.outputs)


def _export_file(src: Path, exporter: IncrementalExporter, limit: int | None,
                 summary: Summary, rejects: RejectLog, show_progress: bool) -> int:
    """Feed one game file to its exporter from where its sealed chunks end; returns the
    games exported (at most ``limit``)."""
    exported = 0
    with progress(None, src.name, "game", enabled=show_progress) as bar:
        for item in open_game_source(src, start=max(1, exporter.next_position)):
            where = position_context(src, item.position)
            result = exporter.add_game(item.position, item.data, item.error, **where)
            bar.update(1)
            summary.count("chunks_sealed", len(result.sealed))
            if result.skipped is not None:
                summary.skip(_skip_reason(result))
                rejects.add(_reject(result, where))
                continue
            summary.count("games")
            exported += 1
            if limit is not None and exported >= limit:
                break
    summary.count("chunks_sealed", len(exporter.finalize()))
    return exported


@click.command("export")
@click.option("--db", "dbs", multiple=True, type=click.Path(path_type=Path),
              help="SQLite game database (repeatable).")
@click.option("--jsonl", "jsonls", multiple=True, type=click.Path(path_type=Path),
              help="JSONL game file (repeatable).")
@click.option("--use-discovery", "discovery", type=click.Path(path_type=Path), default=None,
              help="Find game files under this folder (see README, 'Discovery').")
@click.option("--board-type", required=True,
              help="A board type of the game (`playstream games` lists them).")
@click.option("--num-players", required=True, type=click.IntRange(1, MAX_SEATS),
              help="Players of the configuration to export.")
@game_option
@click.option("--output", required=True, type=StoreLocation(),
              help="OUT.npz (one file) or a folder (versions + 'current' link).")
@encoder_options
@click.option("--max-games", type=click.IntRange(1, None), default=None,
              help="Stop after this many exported games (a rerun continues).")
@chunk_store_option(required=False,
                    help_text="Chunk store folder (default: OUTPUT.chunks next to the output).")
@chunk_rows_option
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
              help="ExportCache folder: encoded games reused across chunk stores.")
@progress_option
@rejects_option
@allow_empty_option
@compaction_options
@reports_errors
def export_cmd(dbs: tuple[Path, ...], jsonls: tuple[Path, ...], discovery: Path | None,
               board_type: str, num_players: int, game_name: str, output: Path | str,
               encoder: EncoderChoice, max_games: int | None, chunk_dir: Path | str | None,
               chunk_rows: int, cache_dir: Path | None, show_progress: bool,
               rejects_path: Path | None, allow_empty: bool,
               compact_options: CompactOptions) -> None:
    """Export games to a training dataset through the chunk store (bounded memory)."""
    sources = [*dbs, *jsonls]
    if discovery is not None:
        sources += discover_game_files(discovery, board_type, num_players)
    if not sources:
        raise GameFileError("no game files: give --db, --jsonl or --use-discovery")
    for src in sources:
        if not src.is_file():
            raise GameFileError("game file does not exist", file=str(src))
    store = ChunkStore(chunk_dir or f"{output}.chunks")
    cache = ExportCache(cache_dir) if cache_dir else None
    summary = Summary("export")
    exported = 0
    feature_version = encoder.version_for(game_name)
    config = ExportSettings(game=game_name, board_type=board_type, num_players=num_players,
                            feature_version=feature_version,
                            history_length=encoder.history_length).dataset_config()
    scope = encoder_scope(feature_version, encoder.history_length)
    with RejectLog(rejects_path) as rejects:
        for src in sources:
            if max_games is not None and exported >= max_games:
                break
            writer = ChunkWriter(store, file_stream_id(src), scope, max_rows=chunk_rows,
                                 max_bytes=compact_options.memory_budget_bytes // 4,
                                 always=(config,),
                                 origin=ChunkOrigin.game_file(src))
            exporter = IncrementalExporter(
                writer, feature_version=feature_version,
                history_length=encoder.history_length, cache=cache,
                accept=config_filter(game_name, board_type, num_players))
            try:
                limit = None if max_games is None else max_games - exported
                exported += _export_file(src, exporter, limit, summary, rejects,
                                         show_progress)
            finally:
                writer.close()
    result = compact_with_progress(store, config.key(), output, compact_options, summary,
                                   allow_empty=allow_empty, show_progress=show_progress)
    summarise_compaction(summary, result, compact_options)
    summary.echo()


@click.command("compact")
@chunk_store_option(required=True, must_exist=True, help_text="Chunk store to compact: a folder or s3://BUCKET/PREFIX.")
@click.option("--output", required=True, type=StoreLocation(),
              help="OUT.npz (one file) or a folder (versions + 'current' link).")
@click.option("--config", "config_key", default=None,
              help="Configuration key (a folder of the chunk store); needed when it holds "
                   "several.")
@progress_option
@allow_empty_option
@compaction_options
@reports_errors
def compact_cmd(chunk_dir: Path | str, output: Path | str, config_key: str | None,
                show_progress: bool, allow_empty: bool, compact_options: CompactOptions) -> None:
    """Compact sealed chunks into a dataset (ad hoc; the finalizer does it continuously)."""
    summary = Summary("compact")
    result = compact_with_progress(ChunkStore(chunk_dir), config_key, output, compact_options,
                                   summary, allow_empty=allow_empty,
                                   show_progress=show_progress)
    summarise_compaction(summary, result, compact_options)
    summary.echo()


