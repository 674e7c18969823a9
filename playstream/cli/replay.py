"""`playstream replay`: rebuild chunks and datasets from the retained games topic."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from playstream.chunks import ChunkStore
from playstream.cli.common import Summary, Timestamp, progress, reports_errors
from playstream.cli.export import build_compact_options, summarise_compaction, compaction_options
from playstream.consumers.compaction import compact
from playstream.dataset.config import encoder_scope
from playstream.encoders.versions import FEATURE_VERSIONS, get_feature_version
from playstream.producers.topics import DEFAULT_GAMES_TOPIC
from playstream.streams.replay import replay_topic


class StartPoint(click.ParamType):
    """``earliest`` (None) or an ISO 8601 time with a time zone."""

    name = "earliest|timestamp"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime | None:
        if value is None or str(value).strip().lower() == "earliest":
            return None
        return Timestamp().convert(value, param, ctx)


@click.command("replay")
@click.option("--bootstrap", required=True, help="Kafka bootstrap server HOST:PORT.")
@click.option("--topic", default=DEFAULT_GAMES_TOPIC, show_default=True)
@click.option("--from", "since", type=StartPoint(), default="earliest", show_default=True,
              help="earliest, or an ISO 8601 time: the first record published at or after it.")
@click.option("--feature-version", type=click.Choice(FEATURE_VERSIONS),
              default=get_feature_version(), show_default=True)
@click.option("--history-length", type=click.IntRange(0, 8), default=3, show_default=True)
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the replay's chunks/ and datasets/<configuration>/.")
@click.option("--group", default=None,
              help="Consumer group for progress monitoring (default: playstream-replay-"
                   "<feature version>_h<history>).")
@click.option("--chunk-rows", type=click.IntRange(1, None), default=20_000, show_default=True)
@click.option("--progress/--no-progress", "show_progress", default=True)
@compaction_options
@reports_errors
def replay_cmd(bootstrap: str, topic: str, since: datetime | None, feature_version: str,
               history_length: int, output: Path, group: str | None, chunk_rows: int,
               show_progress: bool, window: str, shuffle: bool, seed: int, val_fraction: float,
               shard_rows: int | None, sample_every: int, min_moves: int, dense_policy: bool,
               memory_mb: int) -> None:
    """Re-encode the retained topic into a new chunk store and publish its datasets, under
    its own consumer group, without touching the live pipeline. A rerun resumes."""
    options = build_compact_options(window, shuffle, seed, val_fraction, shard_rows, sample_every,
                               min_moves, dense_policy, memory_mb)
    scope = encoder_scope(feature_version, history_length)
    store = ChunkStore(output / "chunks")
    summary = Summary("replay")
    with progress(None, "replay", "record", enabled=show_progress) as bar:
        result = replay_topic(bootstrap, topic, store, feature_version=feature_version,
                              history_length=history_length,
                              group=group or f"playstream-replay-{scope}", since=since,
                              max_rows=chunk_rows, progress=bar.update)
    summary.count("records", result.records)
    summary.count("chunks_sealed", len(result.sealed))
    for reason, n in result.invalid.items():
        summary.skip(reason, n)
    for key in sorted(set(store.scoped_keys(scope))):
        with progress(None, f"compact {key}", "row", enabled=show_progress) as bar:
            compacted = compact(store, key, output / "datasets" / key, options,
                                progress=lambda done: bar.update(done - bar.n))
        summarise_compaction(summary, compacted)
    summary.echo()
