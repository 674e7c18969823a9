"""The `playstream` command: one entry point, one module per family of subcommands."""
from __future__ import annotations

import click

from playstream import logs
from playstream.cli.datasets import inspect_cmd, validate_cmd
from playstream.cli.demo import demo_cmd
from playstream.cli.export import compact_cmd, export_cmd
from playstream.cli.finalize import finalize_cmd
from playstream.cli.gamefiles import state_pool_cmd, to_jsonl_cmd
from playstream.cli.publish import publish_cmd
from playstream.cli.replay import replay_cmd
from playstream.cli.report import report_cmd
from playstream.cli.selfplay import selfplay_cmd
from playstream.cli.stream import stream_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="Structured JSON logs on stderr at this level.")
@click.version_option(package_name="playstream")
def main(log_level: str) -> None:
    """playstream: self-play game records to checksummed NPZ training data."""
    logs.configure(log_level)


for command in (demo_cmd, selfplay_cmd, publish_cmd, stream_cmd, finalize_cmd, replay_cmd,
                export_cmd, compact_cmd, validate_cmd, inspect_cmd, to_jsonl_cmd,
                state_pool_cmd, report_cmd):
    main.add_command(command)
