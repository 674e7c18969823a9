"""`playstream report`: one HTML page of figures and numbers about a dataset."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from playstream.cli.common import (Summary, kafka_extra, needs_extra, progress,
                                   reports_errors)
from playstream.cli.options import dlq_topic_option, kafka_options, progress_option
from playstream.report.stats import collect, find_sources
from playstream.topics import DEFAULT_DLQ_TOPIC

MAX_DEAD_LETTERS = 100_000

if TYPE_CHECKING:
    from playstream.clients.kafka import KafkaConnection


@click.command("report")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML page to write (self-contained: figures inlined as PNG).")
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Also write each figure as <figure>.png into this folder.")
@kafka_options(required=False,
                  help_text="Kafka bootstrap servers HOST:PORT[,...]: with --dlq-topic, add "
                            "the dead-letter reasons.")
@dlq_topic_option(None, help_text=f"Dead-letter topic to count the reasons of (e.g. "
                                  f"{DEFAULT_DLQ_TOPIC}); needs --bootstrap-server.")
@click.option("--max-dead-letters", type=click.IntRange(1, 10_000_000),
              default=MAX_DEAD_LETTERS, show_default=True,
              help="Read at most the newest N dead letters of each partition.")
@progress_option
@reports_errors
def report_cmd(source: Path, output: Path, png_dir: Path | None,
               kafka: KafkaConnection | None,
               dlq_topic: str | None, max_dead_letters: int, show_progress: bool) -> None:
    """Report on SOURCE: a .npz dataset, a dataset folder (its `current` version), a version
    folder, or a finalizer output folder (one dataset folder per configuration).

    Rows, games and versions per configuration, game lengths, outcomes by seat, value
    targets, policy entropy by move number, moves over the board, duplicate move sequences
    and, with --bootstrap-server and --dlq-topic, the dead-letter reasons. Rows are read in
    batches, so memory stays bounded whatever the dataset's size.
    """
    if dlq_topic is not None and kafka is None:
        raise click.UsageError("--dlq-topic needs --bootstrap-server")
    with needs_extra("report", "report", ("matplotlib",)):
        from playstream.report.render import draw_all, page, write_pngs
    summary = Summary("report")
    sources = find_sources(source)
    with progress(sources.total_rows(), "rows", "row", enabled=show_progress) as bar:
        stats = collect(sources, on_rows=bar.update)
    if dlq_topic is not None and kafka is not None:
        with kafka_extra("report"):
            from playstream.streams.deadletter_reasons import count_reasons
        stats.dead_letter_reasons = count_reasons(kafka, dlq_topic,
                                                  max_messages=max_dead_letters)
        summary.count("dead_letters", sum(stats.dead_letter_reasons.values()))
    figures = draw_all(stats, dlq_topic)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page(stats, figures), encoding="utf-8")
    summary.count("configurations", len(stats.configs))
    summary.count("rows", sum(c.rows for c in stats.configs.values()))
    summary.count("figures", len(figures))
    summary.outputs.append(output)
    if png_dir is not None:
        summary.outputs.extend(write_pngs(figures, png_dir))
    summary.echo()
