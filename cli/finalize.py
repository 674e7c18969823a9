"""`playstream finalize`: the continuous finalizer (chunk announcements → published datasets).

Runs until SIGTERM or SIGINT. A stop lets a publish in progress finish (publishing is
all-or-nothing, so a second signal may abort it safely), then leaves the consumer group
without committing what was not yet published.
"""
from __future__ import annotations

import dataclasses
import signal
import threading
from pathlib import Path
from types import FrameType

from typing import TYPE_CHECKING

import click

from playstream.cli.common import Duration, Summary, kafka_extra, reports_errors
from playstream.cli.metrics import serving_metrics
from playstream.cli.options import (MetricsEndpoint, chunk_store_option, chunks_topic_option,
                                    compaction_options, datasets_option, finalizer_group_option,
                                    kafka_options, metrics_options)
from playstream.compaction import CompactOptions
from playstream.errors import PlaystreamError
from playstream.topics import DEFAULT_CHUNKS_TOPIC, SIDE_TOPIC_PARTITIONS

if TYPE_CHECKING:
    from playstream.clients.kafka import KafkaConnection
    from playstream.consumers.service import CycleReport, FinalizerService


def _summarise(report: CycleReport) -> Summary:
    summary = Summary("finalize")
    summary.count("announcements", report.accepted)
    summary.count("ignored_announcements", report.ignored)
    summary.count("datasets", len(report.published))
    summary.count("rows", sum(r.rows for r in report.published.values()))
    summary.count("chunks_deleted", len(report.deleted))
    for result in report.published.values():
        summary.outputs.extend(result.outputs)
    for key, error in report.failed.items():
        summary.skip(f"{key}: {error}")
    return summary


def _run_until_signalled(service: FinalizerService) -> None:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal aborts a publish in progress
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.run(stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@click.command("finalize")
@kafka_options()
@chunk_store_option(required=True,
                    help_text="The chunk store the stream processors seal chunks into.")
@datasets_option(help_text="Datasets folder or s3://BUCKET/PREFIX: one dataset per "
                            "configuration key.")
@click.option("--every", "every_s", type=Duration(), default="60s", show_default=True,
              help="How often configurations with new chunks are republished.")
@chunks_topic_option(DEFAULT_CHUNKS_TOPIC)
@finalizer_group_option()
@click.option("--once", is_flag=True,
              help="Publish what the store and the topic hold now, then exit.")
@click.option("--retain-after", "retain_s", type=Duration(allow_zero=True), default=None,
              help="Delete chunks a published dataset holds once older than this (e.g. 7d); "
                   "later datasets no longer include their rows. Default: keep every chunk.")
@click.option("--keep-versions", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Dataset versions kept per configuration (the current one included).")
@compaction_options
@metrics_options
@reports_errors
def finalize_cmd(kafka: KafkaConnection, chunk_dir: Path | str, output: Path | str, every_s: float,
                 chunks_topic: str, group: str, once: bool, retain_s: float | None,
                 keep_versions: int, compact_options: CompactOptions,
                 metrics_endpoint: MetricsEndpoint) -> None:
    """Republish the datasets of configurations with new chunks, continuously."""
    with kafka_extra("finalize"):
        from playstream.consumers.service import FinalizerService
        from playstream.producers.topics import ensure_topics
    options = dataclasses.replace(compact_options, keep_versions=keep_versions)
    # Created here as `playstream stream` creates it, whichever starts first: a topic the
    # broker auto-created would have the wrong settings and make the processors refuse it.
    ensure_topics(kafka, {chunks_topic: SIDE_TOPIC_PARTITIONS})
    with serving_metrics(metrics_endpoint, "finalize") as served, \
            FinalizerService(kafka, chunks_topic=chunks_topic, store_dir=chunk_dir,
                             output_dir=output, options=options, every_s=every_s, group=group,
                             retention_s=retain_s, metrics=served.metrics) as service:
        served.ready_when(lambda: (service.caught_up, "caught up with the chunk store"
                                   if service.caught_up else "comparing the store"))
        if not once:
            _run_until_signalled(service)
            return
        report = service.run_once()
    _summarise(report).echo()
    if report.failed:
        raise PlaystreamError(f"{len(report.failed)} configuration(s) could not be published: "
                              f"{', '.join(sorted(report.failed))}")
