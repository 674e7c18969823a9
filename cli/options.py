"""Options shared by several commands, each declared once.

An `OptionGroup` adds its click options to a command and hands the command one value built
from them (a `CompactOptions`, say), so a new compaction option is one line here and every
command that compacts takes it. Every shared option can also be set from the environment as
``PLAYSTREAM_<OPTION>`` (``--chunk-rows`` is ``PLAYSTREAM_CHUNK_ROWS``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from playstream.compaction.compact import CompactOptions
from playstream.compaction.windows import parse_window
from playstream.dataset.schema import DENSE_FORMAT_VERSION, FORMAT_VERSION
from playstream.encoders.features import MAX_HISTORY_LENGTH
from playstream.encoders.versions import FEATURE_VERSIONS, get_feature_version
from playstream.topics import DEFAULT_GAMES_PARTITIONS, DEFAULT_GAMES_TOPIC

F = TypeVar("F", bound=Callable[..., Any])
ENV_PREFIX = "PLAYSTREAM_"


def env_name(option: str) -> str:
    """``--chunk-rows`` → ``PLAYSTREAM_CHUNK_ROWS``."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def shared_option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """A click option that can also come from ``PLAYSTREAM_<OPTION>``."""
    long_name = next(d for d in decls if d.startswith("--")).split("/")[0]
    attrs.setdefault("envvar", env_name(long_name))
    attrs.setdefault("show_envvar", True)
    return click.option(*decls, **attrs)


@dataclass(frozen=True)
class OptionGroup:
    """Click options whose values reach the command as one argument, ``name``."""

    name: str
    options: tuple[Callable[[F], F], ...]
    params: tuple[str, ...]
    build: Callable[..., Any]

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {p: kwargs.pop(p) for p in self.params}
            kwargs[self.name] = self.build(**values)
            return fn(*args, **kwargs)

        for option in reversed(self.options):
            command = option(command)
        return command  # type: ignore[return-value]


# `--features`: the dataset format that stores the planes that way (docs/FORMAT.md).
FEATURE_FORMATS = {"packed": FORMAT_VERSION, "dense": DENSE_FORMAT_VERSION}


def _compact_options(window: str, shuffle: bool, seed: int, val_fraction: float,
                     shard_rows: int | None, sample_every: int, min_moves: int,
                     dense_policy: bool, features: str, compress: bool,
                     memory_mb: int) -> CompactOptions:
    return CompactOptions(window=parse_window(window), shuffle=shuffle, seed=seed,
                          val_fraction=val_fraction, shard_rows=shard_rows,
                          sample_every=sample_every, min_moves=min_moves,
                          dense_policy=dense_policy, compress=compress,
                          format_version=FEATURE_FORMATS[features],
                          memory_budget_bytes=memory_mb << 20)



compaction_options = OptionGroup(
    "compact_options",
    (
        shared_option("--window", default="all", show_default=True,
                      help="Rows kept: all | N (the newest N) | "
                           "katago[:e=0.65,r=0.4,m=250000] (KataGo's growing window)."),
        shared_option("--shuffle/--no-shuffle", default=False, show_default=True,
                      help="Two-phase external shuffle in bounded memory."),
        shared_option("--seed", type=int, default=0, show_default=True,
                      help="Shuffle seed: the same seed gives the same order."),
        shared_option("--val-fraction", type=click.FloatRange(0.0, 0.5), default=0.0,
                      show_default=True,
                      help="Fraction of games (by a hash of game_id) for validation."),
        shared_option("--shard-rows", type=click.IntRange(1, None), default=None,
                      help="Write shards of this many rows (the output must be a folder)."),
        shared_option("--sample-every", type=click.IntRange(1, None), default=1,
                      show_default=True,
                      help="Keep positions whose move_number is a multiple of k."),
        shared_option("--min-moves", type=click.IntRange(0, None), default=0,
                      show_default=True, help="Drop games shorter than this."),
        shared_option("--dense-policy", is_flag=True,
                      help="Also write a dense policy array."),
        shared_option("--features", type=click.Choice(tuple(FEATURE_FORMATS)),
                      default="packed", show_default=True,
                      help="packed: format 2 (binary planes as bits, constant planes once); "
                           "dense: format 1 (one float32 features array, for readers of "
                           "data['features'])."),
        shared_option("--compress/--no-compress", default=False, show_default=True,
                      help="Deflate the dataset's members (smaller; cannot be "
                           "memory-mapped)."),
        shared_option("--memory-mb", type=click.IntRange(16, None), default=256,
                      show_default=True,
                      help="Memory budget of the compaction (shuffle buckets, batches)."),
    ),
    ("window", "shuffle", "seed", "val_fraction", "shard_rows", "sample_every", "min_moves",
     "dense_policy", "features", "compress", "memory_mb"),
    _compact_options,
)


@dataclass(frozen=True)
class EncoderChoice:
    """Which encoder turns records into rows: its feature version and history frames."""

    feature_version: str
    history_length: int


encoder_options = OptionGroup(
    "encoder",
    (
        shared_option("--feature-version", type=click.Choice(FEATURE_VERSIONS),
                      default=get_feature_version(), show_default=True,
                      help="Feature planes of the rows (see `playstream inspect`)."),
        shared_option("--history-length", type=click.IntRange(0, MAX_HISTORY_LENGTH),
                      default=3, show_default=True,
                      help="Earlier positions stacked as history frames."),
    ),
    ("feature_version", "history_length"),
    EncoderChoice,
)


def chunk_rows_option(fn: F) -> F:
    return shared_option("--chunk-rows", type=click.IntRange(1, None), default=20_000,
                         show_default=True,
                         help="Seal a chunk when it holds this many rows.")(fn)


def progress_option(fn: F) -> F:
    return click.option("--progress/--no-progress", "show_progress", default=True,
                        show_default=True,
                        help="Progress bars on stderr.")(fn)


def bootstrap_option(*, required: bool,
                     help_text: str = "Kafka bootstrap servers HOST:PORT[,HOST:PORT...]."
                     ) -> Callable[[F], F]:
    """Kafka's own name, ``--bootstrap-server``; ``--bootstrap`` stays as an alias."""
    return shared_option("--bootstrap-server", "--bootstrap", "bootstrap", required=required,
                         default=None, envvar=env_name("--bootstrap-servers"), help=help_text)


def topic_option(fn: F) -> F:
    return shared_option("--topic", default=DEFAULT_GAMES_TOPIC, show_default=True,
                         help="Games topic.")(fn)


def partitions_option(fn: F) -> F:
    return shared_option("--partitions", type=click.IntRange(1, 10_000),
                         default=DEFAULT_GAMES_PARTITIONS, show_default=True,
                         help="Partitions of the games topic (checked, or used to create "
                              "it).")(fn)


class StoreLocation(click.ParamType):
    """A local path (a Path) or an ``s3://bucket/prefix`` URL (kept as a str): what names a
    chunk store or an output wherever a folder is named. ``must_exist`` applies to paths."""

    name = "PATH|s3://BUCKET/PREFIX"

    def __init__(self, *, must_exist: bool = False) -> None:
        self.must_exist = must_exist

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Path | str:
        text = str(value)
        if text.startswith("s3://"):
            if len(text) <= len("s3://") or text[len("s3://")] == "/":
                self.fail(f"{text!r} names no bucket: s3://BUCKET[/PREFIX]", param, ctx)
            return text.rstrip("/")
        if "://" in text:
            self.fail(f"{text!r}: use a local path or s3://BUCKET[/PREFIX]", param, ctx)
        path = Path(text)
        if self.must_exist and not path.exists():
            self.fail(f"{text!r} does not exist", param, ctx)
        return path


def chunk_store_option(*, required: bool, default: Path | None = None,
                       help_text: str = "Chunk store: a folder or s3://BUCKET/PREFIX."
                       ) -> Callable[[F], F]:
    return shared_option("--chunks", "chunk_dir", type=StoreLocation(),
                         required=required, default=default, show_default=default is not None,
                         help=help_text)
