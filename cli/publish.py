"""`playstream publish` (backfill a game file onto the games topic) and the Kafka side of
`playstream selfplay --bootstrap` (the lead's command calls `run_selfplay_worker`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import click
from tqdm import tqdm

from playstream.cli.common import RejectLog, Summary, kafka_extra, progress, reports_errors
from playstream.cli.metrics import MetricsHandle, serving_metrics
from playstream.cli.options import (MetricsEndpoint, bootstrap_option, metrics_options,
                                    partitions_option, rejects_option, topic_option)
from playstream.errors import PlaystreamError, RecordError
from playstream.gamefiles import SourceItem, open_game_source, position_context
from playstream.rejects import Reject, field_family
from playstream.topics import DEFAULT_GAMES_PARTITIONS
from playstream.records import GameRecord, parse_record

if TYPE_CHECKING:
    from playstream.producers.publisher import GamePublisher

DEFAULT_WORKER_SPOOL = Path("playstream-spool")
# /readyz of a publishing command: the broker keeps up while fewer games than this wait.
READY_MAX_SPOOLED = 1000
F = TypeVar("F", bound=Callable[..., Any])


def _open_publisher(bootstrap: str, topic: str, spool_dir: Path,
                    partitions: int) -> GamePublisher:
    """Imported here so that the rest of the CLI works without the optional kafka extra."""
    with kafka_extra("publish"):
        from playstream.producers.publisher import GamePublisher
    return GamePublisher(bootstrap, topic, spool_dir=spool_dir, partitions=partitions)


def _watch_spool(served: MetricsHandle, publisher: GamePublisher) -> None:
    """Spool gauges read at each scrape; ready while the broker keeps the spool short."""
    def refresh() -> None:
        m = publisher.metrics()
        served.metrics.spool(m.spooled_pending, m.oldest_pending_age_s)

    def ready() -> tuple[bool, str]:
        m = publisher.metrics()
        return (m.spooled_pending < READY_MAX_SPOOLED,
                f"{m.spooled_pending} games in the spool (last error: {m.last_error})")

    served.on_scrape(refresh)
    served.ready_when(ready)


def _close_and_check(publisher: GamePublisher, summary: Summary, timeout: float) -> None:
    """Close the publisher, echo the summary with what the broker acknowledged, and fail
    the command if any game is left in the spool (the next run on it sends them first)."""
    left = publisher.close(timeout)
    metrics = publisher.metrics()
    summary.count("acknowledged", metrics.published)
    if left:
        summary.count("left_in_spool", left)
    summary.echo()
    if left:
        raise PlaystreamError(f"the broker did not acknowledge {left} games within {timeout:g}s"
                              f" (last error: {metrics.last_error}); they stay in the spool and "
                              "are sent first by the next run with the same --spool",
                              path=str(publisher.spool_dir))


@click.command("publish")
@click.option("--db", "db", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A SQLite game database to publish.")
@click.option("--jsonl", "jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSONL game file to publish.")
@bootstrap_option(required=True)
@topic_option
@partitions_option
@click.option("--spool", "spool_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Spool directory [default: the game file's path + '.spool'].")
@click.option("--timeout", type=click.FloatRange(0, None), default=60.0, show_default=True,
              help="Seconds to wait at the end for the broker to acknowledge every game.")
@metrics_options
@rejects_option
@reports_errors
def publish_cmd(db: Path | None, jsonl: Path | None, bootstrap: str, topic: str,
                partitions: int, spool_dir: Path | None, timeout: float,
                rejects_path: Path | None, metrics_endpoint: MetricsEndpoint) -> None:
    """Backfill: validate every game of a game file and publish the valid ones to Kafka.

    Publishing a file again sends its games again (same key, same bytes); consumers
    deduplicate by game_id.
    """
    sources = [p for p in (db, jsonl) if p is not None]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --db and --jsonl")
    source = sources[0]
    spool = spool_dir if spool_dir is not None else source.with_name(source.name + ".spool")
    summary = Summary("publish")
    items = open_game_source(source)
    with serving_metrics(metrics_endpoint, "publish") as served:
        publisher = _open_publisher(bootstrap, topic, spool, partitions)
        _watch_spool(served, publisher)
        _publish_items(publisher, items, source, summary, timeout, rejects_path)


def _publish_items(publisher: GamePublisher, items: Iterator[SourceItem], source: Path,
                   summary: Summary, timeout: float, rejects_path: Path | None) -> None:
    try:
        with progress(None, "publish", "game") as bar, RejectLog(rejects_path) as rejects:
            for item in items:
                bar.update(1)
                where = position_context(source, item.position)
                error = item.error
                if error is None:
                    try:
                        publisher.publish(parse_record(item.data, **where))
                        summary.count("published")
                        continue
                    except RecordError as err:
                        error = err
                summary.skip(f"invalid {field_family(error.field)}")
                rejects.add(Reject.from_error(error, **where))
    except BaseException:
        publisher.close(timeout)  # deliver what we can; the original error is reported
        raise
    _close_and_check(publisher, summary, timeout)


def selfplay_worker_options(fn: F) -> F:
    """The Kafka options of `playstream selfplay`; with --bootstrap the games go to the
    topic (through the spool) instead of a file."""
    fn = metrics_options(fn)
    fn = click.option("--spool", "spool_dir", type=click.Path(file_okay=False, path_type=Path),
                      default=DEFAULT_WORKER_SPOOL, show_default=True,
                      help="Spool directory of this worker (one per worker).")(fn)
    fn = partitions_option(fn)
    fn = topic_option(fn)
    # Not from the environment nor the file's top level: a worker with --output must not
    # start publishing because PLAYSTREAM_BOOTSTRAP_SERVERS happens to be set. Only an
    # explicit choice sets it: the command line or the file's [selfplay] table.
    fn = bootstrap_option(required=False, environment=False,
                          help_text="Kafka bootstrap servers HOST:PORT[,...]: publish games to "
                                    "Kafka instead of a file.")(fn)
    return fn


def run_selfplay_worker(bootstrap: str, topic: str, spool_dir: Path,
                        records: Iterator[GameRecord], summary: Summary, bar: tqdm, *,
                        partitions: int = DEFAULT_GAMES_PARTITIONS,
                        timeout: float = 60.0,
                        served: MetricsHandle | None = None) -> None:
    """Publish every game ``records`` yields (forever if it never ends). On exit, including
    Ctrl-C, waits up to ``timeout`` seconds for the broker and echoes ``summary``; raises
    PlaystreamError (exit 1) naming the count left in the spool if the broker did not
    acknowledge everything. ``served``: where to report the spool's gauges."""
    publisher = _open_publisher(bootstrap, topic, spool_dir, partitions)
    if served is not None:
        _watch_spool(served, publisher)
    try:
        for record in records:
            publisher.publish(record)
            summary.count("games")
            summary.count("moves", len(record.moves))
            bar.update(1)
    except KeyboardInterrupt:
        pass  # the way to stop a --forever worker: deliver what we can and report
    except BaseException:
        publisher.close(timeout)
        raise
    _close_and_check(publisher, summary, timeout)
