"""`playstream status`: where the pipeline stands, from Kafka and the chunk store, whether or
not the processors run; also a cron or monitoring check (exit 1 past a threshold)."""
from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from playstream.chunks import ChunkStore
from playstream.cli.common import Duration, kafka_extra, reports_errors
from playstream.cli.options import (chunk_store_option, datasets_option, kafka_options,
                                    dlq_topic_option, processor_group_option,
                                    topic_option)
from playstream.cli.stream import DEFAULT_CHUNKS_DIR
from playstream.compaction.inventory import newest_datasets, store_inventory
from playstream.errors import PlaystreamError
from playstream.topics import DEFAULT_DLQ_TOPIC, FINALIZER_GROUP

if TYPE_CHECKING:
    from playstream.clients.kafka import KafkaConnection


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _echo_text(report: dict[str, Any]) -> None:
    click.echo(f"games topic {report['topic']} (sealed through: {report['chunks']})")
    click.echo(f"  {'partition':>9} {'end':>10} {'sealed':>10} {'lag':>8} {'committed':>10} "
               f"{'oldest unsealed':>16}")
    for p in report["partitions"]:
        committed = "-" if p["committed"] is None else p["committed"]
        click.echo(f"  {p['partition']:>9} {p['end_offset']:>10} {p['sealed_through']:>10} "
                   f"{p['lag']:>8} {committed:>10} {_age(p['oldest_unsealed_age_s']):>16}")
    click.echo(f"  total lag {report['total_lag']}")
    dlq = report["dead_letters"]
    click.echo(f"dead letters {dlq['topic']}: {dlq['records']} records")
    for letter in dlq["newest"]:
        click.echo(f"  partition {letter['partition']} offset {letter['offset']} "
                   f"game {letter['game_id']}: {letter['reason']}")
    click.echo("configurations:")
    if not report["configurations"]:
        click.echo("  none (the chunk store is empty)")
    for c in report["configurations"]:
        dataset = c.get("dataset")
        published = ("" if "dataset" not in c else
                     "  dataset: none yet" if dataset is None else
                     f"  dataset {dataset['version']} ({dataset['rows']} rows, "
                     f"{_age(dataset['age_s'])} old)")
        click.echo(f"  {c['config_key']}: {c['chunks']} chunks, {c['rows']} rows, "
                   f"{c['games']} games{published}")
    click.echo("groups:")
    for g in report["groups"]:
        click.echo(f"  {g['group']} ({g['state']}): {len(g['members'])} members")
        for m in g["members"]:
            click.echo(f"    {m['client_id']} {m['host']} {m['member_id']} "
                       f"[{', '.join(m['partitions'])}]")


def _exceeded(report: dict[str, Any], max_lag: int | None,
              max_age_s: float | None) -> list[str]:
    found = []
    if max_lag is not None:
        found += [f"partition {p['partition']} lags by {p['lag']} records (--max-lag "
                  f"{max_lag})" for p in report["partitions"] if p["lag"] > max_lag]
    if max_age_s is not None:
        for c in report["configurations"]:
            dataset = c["dataset"]
            if dataset is None:
                found.append(f"{c['config_key']} has chunks but no dataset")
            elif dataset["age_s"] > max_age_s:
                found.append(f"{c['config_key']}'s dataset is {_age(dataset['age_s'])} old "
                             f"(--max-dataset-age {_age(max_age_s)})")
    return found


@click.command("status")
@kafka_options()
@topic_option
@dlq_topic_option(DEFAULT_DLQ_TOPIC)
@processor_group_option
@click.option("--finalizer-group", default=FINALIZER_GROUP, show_default=True,
              help="Consumer group of the finalizer whose members to show.")
@chunk_store_option(required=False, default=DEFAULT_CHUNKS_DIR)
@datasets_option(required=False,
                 help_text="Datasets folder of the finalizer: report the newest version "
                           "per configuration.")
@click.option("--reasons", type=click.IntRange(0, 100), default=5, show_default=True,
              help="How many of the newest dead-letter reasons to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--max-lag", type=click.IntRange(0, None), default=None,
              help="Exit 1 when a partition has more unsealed records than this.")
@click.option("--max-dataset-age", "max_age_s", type=Duration(), default=None,
              help="Exit 1 when a configuration's newest dataset is older than this (or "
                   "missing); needs --output.")
@reports_errors
def status_cmd(kafka: KafkaConnection, topic: str, dlq_topic: str, group: str,
               finalizer_group: str,
               chunk_dir: Path, output: Path | None, reasons: int, as_json: bool,
               max_lag: int | None, max_age_s: float | None) -> None:
    """Lag per partition (end offset - sealed-through from the chunk names), the age of the
    oldest unsealed record, dead letters, chunks and datasets per configuration, group
    members. Reads only: it never joins a group or moves an offset."""
    if max_age_s is not None and output is None:
        raise click.UsageError("--max-dataset-age needs --output (the datasets folder)")
    with kafka_extra("status"):
        from playstream.streams.status import KafkaStatus
    if not chunk_dir.is_dir():
        raise PlaystreamError("the chunk store does not exist", path=str(chunk_dir))
    inventory = store_inventory(ChunkStore(chunk_dir))
    keys = [c.config_key for c in inventory.configurations]
    datasets = newest_datasets(output, keys) if output is not None else {}
    now = datetime.now(timezone.utc)
    with KafkaStatus(kafka) as cluster:
        partitions = cluster.games_partitions(topic, inventory.sealed_through, group)
        dead = cluster.dead_letters(dlq_topic, reasons)
        groups = cluster.groups([group, finalizer_group])
    configurations = []
    for c in inventory.configurations:
        entry: dict[str, Any] = asdict(c)
        if output is not None:
            version = datasets[c.config_key]
            entry["dataset"] = None if version is None else {
                "version": version.version, "created_at": version.created_at.isoformat(),
                "age_s": round(version.age_s(now), 3), "rows": version.rows,
                "games": version.games}
        configurations.append(entry)
    report = {
        "topic": topic, "chunks": str(chunk_dir),
        "partitions": [asdict(p) for p in partitions],
        "total_lag": sum(p.lag for p in partitions),
        "dead_letters": asdict(dead), "configurations": configurations,
        "quarantined_chunks": inventory.quarantined,
        "groups": [asdict(g) for g in groups],
    }
    exceeded = _exceeded(report, max_lag, max_age_s)
    report["exceeded"] = exceeded
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        _echo_text(report)
    if exceeded:
        raise PlaystreamError("; ".join(exceeded))
