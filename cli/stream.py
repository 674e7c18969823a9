"""`playstream stream`: one stream processor, from the games topic to sealed chunks, until
SIGTERM or SIGINT. Start several (same ``--group``) to share the partitions."""
from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import click

from playstream.cli.common import Duration, Summary, Timestamp, kafka_extra, reports_errors
from playstream.cli.options import (EncoderChoice, bootstrap_option, chunk_rows_option,
                                    chunk_store_option, encoder_options, partitions_option,
                                    shared_option, topic_option)
from playstream.errors import PlaystreamError
from playstream.topics import (DEFAULT_CHUNKS_TOPIC, DEFAULT_DLQ_TOPIC, PROCESSOR_GROUP,
                               SIDE_TOPIC_PARTITIONS)

DEFAULT_CHUNKS_DIR = Path("playstream-chunks")


@click.command("stream")
@bootstrap_option(required=True)
@topic_option
@partitions_option
@click.option("--group", default=PROCESSOR_GROUP, show_default=True,
              help="Consumer group: processors of one group share the partitions.")
@chunk_store_option(required=False, default=DEFAULT_CHUNKS_DIR)
@encoder_options
@chunk_rows_option
@click.option("--chunk-age", type=Duration(), default="60s", show_default=True,
              help="Seal a partition's chunk when it is this old, even if it is small.")
@shared_option("--dlq-topic", default=DEFAULT_DLQ_TOPIC, show_default=True,
               help="Dead-letter topic.")
@shared_option("--chunks-topic", default=DEFAULT_CHUNKS_TOPIC, show_default=True,
               help="Chunk announcement topic.")
@click.option("--from", "from_time", type=Timestamp(), default=None,
              help="Replay: skip records older than this time (ISO 8601 with a time zone); "
                   "never re-reads what the store has sealed.")
@reports_errors
def stream_cmd(bootstrap: str, topic: str, partitions: int, group: str, chunk_dir: Path | str,
               encoder: EncoderChoice, chunk_rows: int, chunk_age: float, dlq_topic: str,
               chunks_topic: str, from_time: datetime | None) -> None:
    """Consume game records from Kafka into exactly-once chunks until SIGTERM/SIGINT.

    Invalid records go to the dead-letter topic with their reason; every sealed chunk is
    announced on the chunks topic. A stop discards the open chunks (the next owner re-reads
    them) and releases the stream locks.
    """
    with kafka_extra("stream"):
        from playstream.producers.topics import ensure_topics
        from playstream.streams.faust_app import build_app, run_worker

    ensure_topics(bootstrap, {topic: partitions, dlq_topic: SIDE_TOPIC_PARTITIONS,
                              chunks_topic: SIDE_TOPIC_PARTITIONS})
    app = build_app(bootstrap, group=group, games_topic=topic, dlq_topic=dlq_topic,
                    chunks_topic=chunks_topic, store_dir=chunk_dir,
                    feature_version=encoder.feature_version,
                    history_length=encoder.history_length,
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
