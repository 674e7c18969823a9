"""`playstream replay`: rebuild chunks and datasets from the retained games topic."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from playstream.chunks import ChunkStore
from playstream.cli.common import Summary, Timestamp, kafka_extra, progress, reports_errors
from playstream.cli.export import summarise_compaction
from playstream.cli.options import (EncoderChoice, StoreLocation, chunk_rows_option,
                                    compaction_options, encoder_options, game_option,
                                    kafka_options, progress_option, topic_option)
from playstream.compaction.compact import CompactOptions, compact
from playstream.compaction.publish import output_child
from playstream.dataset.config import encoder_scope

if TYPE_CHECKING:
    from playstream.clients.kafka import KafkaConnection


class StartPoint(click.ParamType):
    """``earliest`` (None) or an ISO 8601 time with a time zone."""

    name = "earliest|timestamp"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime | None:
        if value is None or str(value).strip().lower() == "earliest":
            return None
        return Timestamp().convert(value, param, ctx)


@click.command("replay")
@kafka_options()
@topic_option
@click.option("--from", "since", type=StartPoint(), default="earliest", show_default=True,
              help="earliest, or an ISO 8601 time: the first record published at or after it.")
@game_option
@encoder_options
@click.option("--output", required=True, type=StoreLocation(),
              help="Folder or s3:// prefix for the replay's chunks/ and "
                   "datasets/<configuration>/.")
@click.option("--group", default=None,
              help="Consumer group for progress monitoring (default: playstream-replay-"
                   "<feature version>_h<history>).")
@chunk_rows_option
@progress_option
@compaction_options
@reports_errors
def replay_cmd(kafka: KafkaConnection, topic: str, since: datetime | None, game_name: str,
               encoder: EncoderChoice,
               output: Path | str, group: str | None, chunk_rows: int, show_progress: bool,
               compact_options: CompactOptions) -> None:
    """Re-encode the retained topic into a new chunk store and publish its datasets, under
    its own consumer group, without touching the live pipeline. A rerun resumes."""
    with kafka_extra("replay"):
        from playstream.streams.replay import replay_topic
    feature_version = encoder.version_for(game_name)
    scope = encoder_scope(feature_version, encoder.history_length)
    store = ChunkStore(output_child(output, "chunks"))
    summary = Summary("replay")
    with progress(None, "replay", "record", enabled=show_progress) as bar:
        result = replay_topic(kafka, topic, store,
                              feature_version=feature_version,
                              history_length=encoder.history_length,
                              group=group or f"playstream-replay-{scope}", since=since,
                              max_rows=chunk_rows, progress=bar.update)
    summary.count("records", result.records)
    summary.count("chunks_sealed", len(result.sealed))
    for reason, n in result.invalid.items():
        summary.skip(reason, n)
    for key in sorted(set(store.scoped_keys(scope))):
        with progress(None, f"compact {key}", "row", enabled=show_progress) as bar:
            compacted = compact(store, key, output_child(output_child(output, "datasets"), key),
                                compact_options,
                                progress=lambda done: bar.update(done - bar.n))
        summarise_compaction(summary, compacted, compact_options)
    summary.echo()
