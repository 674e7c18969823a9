"""`playstream export` (game files → chunks → dataset) and `playstream compact` (chunks →
dataset). Export is incremental: a rerun resumes after the last sealed chunk of each file,
so a killed export loses nothing and a grown file costs only its new games."""
from __future__ import annotations

import re
from pathlib import Path

import click

from playstream.chunks import ChunkOrigin, ChunkStore, ChunkWriter, file_stream_id
from playstream.cli.common import Summary, progress, reports_errors
from playstream.cli.options import (EncoderChoice, StoreLocation, chunk_rows_option,
                                    chunk_store_option, compaction_options, encoder_options,
                                    progress_option, shared_option)
from playstream.compaction.compact import CompactOptions, CompactionResult, compact
from playstream.dataset.config import encoder_scope
from playstream.encoders.cache import ExportCache
from playstream.encoders.versions import ExportSettings
from playstream.errors import GameFileError
from playstream.gamefiles import open_game_source
from playstream.incremental import IncrementalExporter, RecordFilter
from playstream.records import GameRecord

CONFIG_TAG = re.compile(
    r"(?:^|[^a-z0-9])(?P<board>[a-z][a-z0-9]*)_(?P<players>[234])p(?:[^a-z0-9]|$)")


def discover_game_files(root: Path, board_type: str, num_players: int) -> list[Path]:
    """Game files under ``root`` by the documented convention: every ``*.db`` and ``*.jsonl``
    below it (hidden folders and ``*.chunks`` folders excluded). A file whose name carries a
    configuration tag ``<board>_<n>p`` (``hex8_3p_node7.db``) is taken only for that
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


def config_filter(game: str, board_type: str, num_players: int) -> RecordFilter:
    def accept(record: GameRecord) -> str | None:
        if (record.game, record.board_type, record.num_players) != (game, board_type,
                                                                     num_players):
            return "other configuration (game/board_type/num_players differ from the export)"
        return None

    return accept


def summarise_compaction(summary: Summary, result: CompactionResult) -> None:
    summary.count("rows", result.rows)
    summary.count("dataset_games", result.games)
    if result.val_rows:
        summary.count("train_rows", result.train_rows)
        summary.count("val_rows", result.val_rows)
    for path, reason in result.quarantined:
        summary.skip(f"chunk quarantined: {reason}")
    summary.outputs.extend(result.outputs)


@click.command("export")
@click.option("--db", "dbs", multiple=True, type=click.Path(path_type=Path),
              help="SQLite game database (repeatable).")
@click.option("--jsonl", "jsonls", multiple=True, type=click.Path(path_type=Path),
              help="JSONL game file (repeatable).")
@click.option("--use-discovery", "discovery", type=click.Path(path_type=Path), default=None,
              help="Find game files under this folder (see README, 'Discovery').")
@click.option("--board-type", required=True,
              help="A board of the game (connect: square8, square19, hex8, hexagonal).")
@click.option("--num-players", required=True, type=click.IntRange(2, 4))
@click.option("--game", "game_name", default="connect", show_default=True,
              help="Registered game (entry point group playstream.games).")
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
@compaction_options
@reports_errors
def export_cmd(dbs: tuple[Path, ...], jsonls: tuple[Path, ...], discovery: Path | None,
               board_type: str, num_players: int, game_name: str, output: Path | str,
               encoder: EncoderChoice, max_games: int | None, chunk_dir: Path | str | None,
               chunk_rows: int, cache_dir: Path | None, show_progress: bool,
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
    config = ExportSettings(game=game_name, board_type=board_type, num_players=num_players,
                            feature_version=encoder.feature_version,
                            history_length=encoder.history_length).dataset_config()
    for src in sources:
        if max_games is not None and exported >= max_games:
            break
        writer = ChunkWriter(store, file_stream_id(src), encoder_scope(encoder.feature_version,
                                                                       encoder.history_length),
                             max_rows=chunk_rows,
                             max_bytes=compact_options.memory_budget_bytes // 4,
                             always=(config,),
                             origin=ChunkOrigin.game_file(src))
        exporter = IncrementalExporter(writer, feature_version=encoder.feature_version,
                                       history_length=encoder.history_length,
                                       accept=config_filter(game_name, board_type, num_players),
                                       cache=cache)
        try:
            with progress(None, src.name, "game", enabled=show_progress) as bar:
                for item in open_game_source(src, start=max(1, writer.next_position)):
                    result = exporter.add_game(item.position, item.data, item.error,
                                               file=str(src), record=item.position)
                    bar.update(1)
                    summary.count("chunks_sealed", len(result.sealed))
                    if result.skipped is not None:
                        err = result.invalid
                        summary.skip(f"invalid {err.field}" if err is not None
                                     else result.skipped)
                    else:
                        summary.count("games")
                        exported += 1
                        if max_games is not None and exported >= max_games:
                            break
            sealed = exporter.finalize()
            summary.count("chunks_sealed", len(sealed))
        finally:
            writer.close()
    with progress(None, "compact", "row", enabled=show_progress) as bar:
        result = compact(store, config.key(), output, compact_options,
                         progress=lambda done: bar.update(done - bar.n))
    summarise_compaction(summary, result)
    summary.echo()


@click.command("compact")
@shared_option("--chunks", "chunk_dir", required=True,
               type=StoreLocation(must_exist=True),
               help="Chunk store to compact: a folder or s3://BUCKET/PREFIX.")
@click.option("--output", required=True, type=StoreLocation(),
              help="OUT.npz (one file) or a folder (versions + 'current' link).")
@click.option("--config", "config_key", default=None,
              help="Configuration key (a folder of the chunk store); needed when it holds "
                   "several.")
@progress_option
@compaction_options
@reports_errors
def compact_cmd(chunk_dir: Path | str, output: Path | str, config_key: str | None, show_progress: bool,
                compact_options: CompactOptions) -> None:
    """Compact sealed chunks into a dataset (ad hoc; the finalizer does it continuously)."""
    summary = Summary("compact")
    with progress(None, "compact", "row", enabled=show_progress) as bar:
        result = compact(ChunkStore(chunk_dir), config_key, output, compact_options,
                         progress=lambda done: bar.update(done - bar.n))
    summarise_compaction(summary, result)
    summary.echo()


