"""The `playstream` command: one entry point, one module per family of subcommands."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from playstream import logs
from playstream.cli.config import CONFIG_ENV, apply_config, config_cmd, with_source
from playstream.cli.datasets import inspect_cmd, validate_cmd
from playstream.cli.demo import demo_cmd
from playstream.cli.export import compact_cmd, export_cmd
from playstream.cli.finalize import finalize_cmd
from playstream.cli.games import games_cmd
from playstream.cli.gamefiles import state_pool_cmd, to_jsonl_cmd
from playstream.cli.publish import publish_cmd
from playstream.cli.replay import replay_cmd
from playstream.cli.report import report_cmd
from playstream.cli.selfplay import selfplay_cmd
from playstream.cli.status import status_cmd
from playstream.cli.stream import stream_cmd


class PlaystreamGroup(click.Group):
    """The command group whose errors for bad option values say where the value was written
    (environment variable, or configuration file and line), not only which option it was."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.BadParameter as err:
            raise with_source(err) from None


@click.group(cls=PlaystreamGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="Structured JSON logs on stderr at this level.")
@click.option("--config", "config_file", envvar=CONFIG_ENV, show_envvar=True,
              type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML configuration file: shared options at the top level, per-command "
                   "options in [command] tables (docs/CONFIG.md). Precedence: command line, "
                   "environment, file, default.")
@click.version_option(package_name="playstream")
@click.pass_context
def main(ctx: click.Context, log_level: str, config_file: Path | None) -> None:
    """playstream: self-play game records to checksummed NPZ training data."""
    logs.configure(log_level)
    apply_config(ctx, config_file)


for command in (games_cmd, demo_cmd, selfplay_cmd, publish_cmd, stream_cmd, finalize_cmd, replay_cmd,
                status_cmd, export_cmd, compact_cmd, validate_cmd, inspect_cmd, to_jsonl_cmd,
                state_pool_cmd, config_cmd, report_cmd):
    main.add_command(command)
