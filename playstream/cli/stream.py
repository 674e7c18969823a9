"""`playstream stream`: one stream processor, from the games topic to sealed chunks, until
SIGTERM or SIGINT. Start several (same ``--group``) to share the partitions."""
from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import click

from playstream.cli.common import Duration, Summary, Timestamp, reports_errors
from playstream.encoders.versions import FEATURE_VERSIONS, get_feature_version
from playstream.errors import PlaystreamError
from playstream.producers.topics import (DEFAULT_CHUNKS_TOPIC, DEFAULT_DLQ_TOPIC,
                                         DEFAULT_GAMES_PARTITIONS, DEFAULT_GAMES_TOPIC,
                                         ensure_topics)
from playstream.streams import DEFAULT_GROUP

DEFAULT_CHUNKS_DIR = Path("playstream-chunks")
# The side topics carry little traffic; one partition keeps them in order.
SIDE_TOPIC_PARTITIONS = 1


@click.command("stream")
@click.option("--bootstrap", required=True, help="Kafka bootstrap server HOST:PORT.")
@click.option("--topic", default=DEFAULT_GAMES_TOPIC, show_default=True, help="Games topic.")
@click.option("--partitions", type=click.IntRange(1, 10_000), default=DEFAULT_GAMES_PARTITIONS,
              show_default=True,
              help="Partitions of the games topic (checked, or used to create it).")
@click.option("--group", default=DEFAULT_GROUP, show_default=True,
              help="Consumer group: processors of one group share the partitions.")
@click.option("--chunks", "chunk_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_CHUNKS_DIR, show_default=True, help="Chunk store folder.")
@click.option("--feature-version", type=click.Choice(FEATURE_VERSIONS),
              default=get_feature_version(), show_default=True)
@click.option("--history-length", type=click.IntRange(0, 8), default=3, show_default=True)
@click.option("--chunk-rows", type=click.IntRange(1, None), default=20_000, show_default=True,
              help="Seal a partition's chunk at this many rows.")
@click.option("--chunk-age", type=Duration(), default="60s", show_default=True,
              help="Seal a partition's chunk when it is this old, even if it is small.")
@click.option("--dlq-topic", default=DEFAULT_DLQ_TOPIC, show_default=True,
              help="Dead-letter topic.")
@click.option("--chunks-topic", default=DEFAULT_CHUNKS_TOPIC, show_default=True,
              help="Chunk announcement topic.")
@click.option("--from", "from_time", type=Timestamp(), default=None,
              help="Replay: skip records older than this time (ISO 8601 with a time zone); "
                   "never re-reads what the store has sealed.")
@reports_errors
def stream_cmd(bootstrap: str, topic: str, partitions: int, group: str, chunk_dir: Path,
               feature_version: str, history_length: int, chunk_rows: int, chunk_age: float,
               dlq_topic: str, chunks_topic: str, from_time: datetime | None) -> None:
    """Consume game records from Kafka into exactly-once chunks until SIGTERM/SIGINT.

    Invalid records go to the dead-letter topic with their reason; every sealed chunk is
    announced on the chunks topic. A stop discards the open chunks (the next owner re-reads
    them) and releases the stream locks.
    """
    # faust takes a second to import: only this command pays for it.
    from playstream.streams.faust_app import build_app, run_worker

    ensure_topics(bootstrap, {topic: partitions, dlq_topic: SIDE_TOPIC_PARTITIONS,
                              chunks_topic: SIDE_TOPIC_PARTITIONS})
    app = build_app(bootstrap, group=group, games_topic=topic, dlq_topic=dlq_topic,
                    chunks_topic=chunks_topic, store_dir=chunk_dir,
                    feature_version=feature_version, history_length=history_length,
                    max_rows=chunk_rows, max_age_s=chunk_age, partitions=partitions,
                    from_timestamp=from_time)
    summary = Summary("stream")
    level = logging.getLevelName(logging.getLogger("playstream").getEffectiveLevel()).lower()
    code = run_worker(app, loglevel=level)
    counters = app.processor.counters
    for name in ("processed", "invalid", "redelivered", "missing_offsets", "rows", "chunks"):
        summary.count(name, getattr(counters, name))
    summary.echo()
    if code != 0:
        raise PlaystreamError(f"the stream worker stopped with exit code {code} (its error is "
                              "logged above)", group=group, topic=topic)
