"""`playstream stream`: one stream processor, from the games topic to sealed chunks, until
SIGTERM or SIGINT. Start several (same ``--group``) to share the partitions."""
from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from playstream.cli.common import Duration, Summary, Timestamp, kafka_extra, reports_errors
from playstream.cli.metrics import serving_metrics
from playstream.cli.options import (EncoderChoice, MetricsEndpoint, chunk_rows_option,
                                    chunk_store_option, chunks_topic_option, dlq_topic_option,
                                    encoder_options, game_option, kafka_options,
                                    metrics_options, partitions_option, processor_group_option,
                                    topic_option)
from playstream.errors import PlaystreamError
from playstream.topics import DEFAULT_CHUNKS_TOPIC, DEFAULT_DLQ_TOPIC, SIDE_TOPIC_PARTITIONS

if TYPE_CHECKING:
    from playstream.clients.kafka import KafkaConnection

DEFAULT_CHUNKS_DIR = Path("playstream-chunks")
DEFAULT_READY_MAX_LAG = 10_000


@click.command("stream")
@kafka_options()
@topic_option
@partitions_option
@processor_group_option
@chunk_store_option(required=False, default=DEFAULT_CHUNKS_DIR)
@game_option
@encoder_options
@chunk_rows_option
@click.option("--chunk-age", type=Duration(), default="60s", show_default=True,
              help="Seal a partition's chunk when it is this old, even if it is small.")
@dlq_topic_option(DEFAULT_DLQ_TOPIC)
@chunks_topic_option(DEFAULT_CHUNKS_TOPIC)
@click.option("--from", "from_time", type=Timestamp(), default=None,
              help="Replay: skip records older than this time (ISO 8601 with a time zone); "
                   "never re-reads what the store has sealed.")
@metrics_options
@click.option("--ready-max-lag", type=click.IntRange(0, None), default=DEFAULT_READY_MAX_LAG,
              show_default=True,
              help="/readyz answers 200 once every assigned partition is within this many "
                   "records of its end.")
@reports_errors
def stream_cmd(kafka: KafkaConnection, topic: str, partitions: int, group: str,
               chunk_dir: Path | str, game_name: str, encoder: EncoderChoice, chunk_rows: int,
               chunk_age: float, dlq_topic: str, chunks_topic: str, from_time: datetime | None,
               metrics_endpoint: MetricsEndpoint, ready_max_lag: int) -> None:
    """Consume game records from Kafka into exactly-once chunks until SIGTERM/SIGINT.

    Invalid records go to the dead-letter topic with their reason; every sealed chunk is
    announced on the chunks topic. A stop discards the open chunks (the next owner re-reads
    them) and releases the stream locks.
    """
    feature_version = encoder.version_for(game_name)  # records of other games are skipped
    with kafka_extra("stream"):
        from playstream.producers.topics import ensure_topics
        from playstream.streams.faust_app import build_app, run_worker

    ensure_topics(kafka, {topic: partitions, dlq_topic: SIDE_TOPIC_PARTITIONS,
                          chunks_topic: SIDE_TOPIC_PARTITIONS})
    summary = Summary("stream")
    level = logging.getLevelName(logging.getLogger("playstream").getEffectiveLevel()).lower()
    with serving_metrics(metrics_endpoint, "stream") as served:
        app = build_app(kafka, group=group, games_topic=topic, dlq_topic=dlq_topic,
                        chunks_topic=chunks_topic, store_dir=chunk_dir,
                        feature_version=feature_version,
                        history_length=encoder.history_length,
                        max_rows=chunk_rows, max_age_s=chunk_age, partitions=partitions,
                        from_timestamp=from_time, metrics=served.metrics)
        served.ready_when(lambda: app.readiness(ready_max_lag))
        code = run_worker(app, loglevel=level)
    counters = app.processor.counters
    for name in ("processed", "invalid", "redelivered", "missing_offsets", "rows", "chunks"):
        summary.count(name, getattr(counters, name))
    summary.echo()
    if code != 0:
        raise PlaystreamError(f"the stream worker stopped with exit code {code} (its error is "
                              "logged above)", group=group, topic=topic)
