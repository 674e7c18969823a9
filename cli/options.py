"""Options shared by several commands, each declared once.

An `OptionGroup` adds its click options to a command and hands the command one value built
from them (a `CompactOptions`, say), so a new compaction option is one line here and every
command that compacts takes it.

A shared option has one *key* (``chunk_rows``; ``bootstrap_servers`` for
``--bootstrap-server``) that names it everywhere outside the command line: the environment
variable ``PLAYSTREAM_<KEY>`` (``PLAYSTREAM_CHUNK_ROWS``) and the top-level key of the
configuration file (``chunk_rows = 5000``, see playstream.cli.config). Precedence is click's:
command line, environment, file (the context's ``default_map``), default. The table in
docs/CONFIG.md is generated from these declarations (`playstream config options`).
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
from playstream.encoders.versions import resolve_feature_version
from playstream.topics import (DEFAULT_GAMES_PARTITIONS, DEFAULT_GAMES_TOPIC, FINALIZER_GROUP,
                               PROCESSOR_GROUP)

F = TypeVar("F", bound=Callable[..., Any])
ENV_PREFIX = "PLAYSTREAM_"
# Options whose key contains one of these are never printed (`config show`, error messages).
SECRET_WORDS = ("password", "secret")


def env_name(key: str) -> str:
    """``chunk_rows`` (or ``--chunk-rows``) → ``PLAYSTREAM_CHUNK_ROWS``."""
    return ENV_PREFIX + key.lstrip("-").replace("-", "_").upper()


def option_key(param: click.Parameter) -> str:
    """The name of an option in the configuration file: a shared option's key, else its long
    name with underscores (``--retain-after`` → ``retain_after``)."""
    if isinstance(param, SharedOption):
        return param.key
    longs = [o for o in param.opts if o.startswith("--")] or list(param.opts)
    return longs[0].lstrip("-").replace("-", "_")


def is_secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_WORDS)


class SharedOption(click.Option):
    """An option shared by several commands: settable from ``PLAYSTREAM_<KEY>`` and from the
    configuration file's top level (unless ``shared=False``: then only from the command line
    or the command's own ``[command]`` table)."""

    def __init__(self, *args: Any, key: str, shared: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key = key
        self.shared = shared


def shared_option(*decls: str, key: str | None = None, environment: bool = True,
                  **attrs: Any) -> Callable[[F], F]:
    """A click option that can also come from ``PLAYSTREAM_<KEY>`` and the configuration
    file; ``key`` defaults to the long option name (``--chunk-rows`` → ``chunk_rows``).
    ``environment=False`` declares the option under the same key but settable only
    explicitly (command line or the command's ``[command]`` table)."""
    long_name = next(d for d in decls if d.startswith("--")).split("/")[0]
    key = key or long_name.lstrip("-").replace("-", "_")
    if environment:
        attrs.setdefault("envvar", env_name(key))
        attrs.setdefault("show_envvar", True)
    attrs.setdefault("cls", SharedOption)
    return click.option(*decls, key=key, shared=environment, **attrs)


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
                     dense_policy: bool, features: str, compress: bool, memory_mb: int,
                     drop_duplicate_moves: bool) -> CompactOptions:
    return CompactOptions(window=parse_window(window), shuffle=shuffle, seed=seed,
                          val_fraction=val_fraction, shard_rows=shard_rows,
                          sample_every=sample_every, min_moves=min_moves,
                          dense_policy=dense_policy, compress=compress,
                          format_version=FEATURE_FORMATS[features],
                          memory_budget_bytes=memory_mb << 20,
                          drop_duplicate_moves=drop_duplicate_moves)



compaction_options = OptionGroup(
    "compact_options",
    (
        shared_option("--window", default="all", show_default=True,
                      help="Rows kept: all | N (the newest N) | "
                           "katago[:e=0.65,r=0.4,m=250000] (KataGo's growing window)."),
        shared_option("--shuffle/--no-shuffle", default=False, show_default=True,
                      help="Two-phase external shuffle in bounded memory."),
        # Not `seed`: selfplay's --seed picks the games, a different thing.
        shared_option("--seed", key="shuffle_seed", type=int, default=0, show_default=True,
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
        shared_option("--drop-duplicate-moves", is_flag=True,
                      help="Keep only the oldest of games with the same move sequence under "
                           "different game_ids (always counted and warned about)."),
    ),
    ("window", "shuffle", "seed", "val_fraction", "shard_rows", "sample_every", "min_moves",
     "dense_policy", "features", "compress", "memory_mb", "drop_duplicate_moves"),
    _compact_options,
)


@dataclass(frozen=True)
class EncoderChoice:
    """Which encoder turns records into rows: its feature version and history frames.

    Feature versions are each game's own, so ``--feature-version`` is checked against the
    chosen game when the command runs (`version_for`), not by a fixed list of choices."""

    requested_version: str | None
    history_length: int

    def version_for(self, game_name: str) -> str:
        """The requested version checked against ``game_name`` (FeatureVersionError listing
        the game's versions), or the game's default when none was given."""
        return resolve_feature_version(game_name, self.requested_version)


encoder_options = OptionGroup(
    "encoder",
    (
        shared_option("--feature-version", default=None,
                      help="Feature planes of the rows, one of the game's versions (see "
                           "`playstream games`); default: the game's newest."),
        shared_option("--history-length", type=click.IntRange(0, MAX_HISTORY_LENGTH),
                      default=3, show_default=True,
                      help="Earlier positions stacked as history frames."),
    ),
    ("feature_version", "history_length"),
    lambda feature_version, history_length: EncoderChoice(feature_version, history_length),
)


def game_option(fn: F) -> F:
    """``--game``: a registered game (`playstream games` lists them with their boards)."""
    return shared_option("--game", "game_name", default="connect", show_default=True,
                         help="Registered game (entry point group playstream.games; see "
                              "`playstream games`).")(fn)


def chunk_rows_option(fn: F) -> F:
    return shared_option("--chunk-rows", type=click.IntRange(1, None), default=20_000,
                         show_default=True,
                         help="Seal a chunk when it holds this many rows.")(fn)


def progress_option(fn: F) -> F:
    return shared_option("--progress/--no-progress", "show_progress", default=True,
                         show_default=True,
                         help="Progress bars on stderr.")(fn)


def rejects_option(fn: F) -> F:
    return click.option("--rejects", "rejects_path", default=None,
                        type=click.Path(dir_okay=False, path_type=Path),
                        help="Write every skipped record (where, game_id, field, reason) to "
                             "this file, one JSON object per line; the first "
                             "few are always shown on stderr.")(fn)


def allow_empty_option(fn: F) -> F:
    return click.option("--allow-empty", is_flag=True,
                        help="Publish an empty dataset instead of exiting 1 when no row is "
                             "left (every record skipped, or every row dropped).")(fn)


class NotOnCommandLine(SharedOption):
    """A shared option read only from ``PLAYSTREAM_<KEY>`` and the configuration file: a
    password on the command line would be visible to every user of the machine (``ps``,
    ``/proc/PID/cmdline``) and in the shell's history. Hidden from ``--help``; ``config show``
    and ``config options`` list it (masked)."""

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        return None  # no flag: `--sasl-password x` is an unknown option, not a way in


def bootstrap_option(*, required: bool, environment: bool = True,
                     help_text: str = "Kafka bootstrap servers HOST:PORT[,HOST:PORT...]."
                     ) -> Callable[[F], F]:
    """Kafka's own name, ``--bootstrap-server``; ``--bootstrap`` stays as an alias."""
    return shared_option("--bootstrap-server", "--bootstrap", "bootstrap", key="bootstrap_servers",
                         environment=environment, required=required, help=help_text)


# The command-line spelling of each KafkaConnection field, so that a bad or inconsistent
# setting is reported against the option (and where its value came from) that set it.
KAFKA_FIELDS = {"bootstrap_servers": "bootstrap", "security_protocol": "security_protocol",
                "sasl_mechanism": "sasl_mechanism", "username": "sasl_username",
                "password": "sasl_password", "ssl_cafile": "ssl_cafile",
                "ssl_certfile": "ssl_certfile", "ssl_keyfile": "ssl_keyfile"}


def _kafka_connection(**values: Any) -> Any:
    """A `playstream.clients.kafka.KafkaConnection` from the options, or None when no
    bootstrap server is set (`selfplay --output`, `demo` with its own broker). Imported here:
    this module is loaded by every command, the bare install's included."""
    from playstream.clients.kafka import SASL_PROTOCOLS, KafkaConnection
    from playstream.errors import KafkaConfigError

    if values["bootstrap"] is None:
        return None
    protocol = values["security_protocol"]
    if protocol in SASL_PROTOCOLS and values["sasl_password"] is None:
        raise click.UsageError(f"security protocol {protocol} needs a password: set "
                               "PLAYSTREAM_SASL_PASSWORD or sasl_password in the configuration "
                               "file (there is no command-line option for it)")
    try:
        return KafkaConnection(**{name: values[param] for name, param in KAFKA_FIELDS.items()})
    except KafkaConfigError as err:
        ctx = click.get_current_context()
        name = KAFKA_FIELDS.get(err.field or "", "bootstrap")
        param = next(p for p in ctx.command.params if p.name == name)
        # The hint without click's "(env var: ...)": with_source says where a value came from.
        raise click.BadParameter(err.message, ctx=ctx, param=param,
                                 param_hint=repr(param.opts[0])) from None


def kafka_options(*, required: bool = True, environment: bool = True,
                  help_text: str = "Kafka bootstrap servers HOST:PORT[,HOST:PORT...].",
                  ) -> OptionGroup:
    """How to reach the cluster: the bootstrap servers and the security settings, handed to
    the command as one ``kafka`` argument, a `KafkaConnection` (None when not ``required``
    and no server is given). ``environment=False`` takes the servers from the command line
    or the command's own table only (see `selfplay`); the security settings always come
    from anywhere, since without servers they connect nothing. The password has no flag:
    ``PLAYSTREAM_SASL_PASSWORD`` or ``sasl_password`` in the file."""
    files = click.Path(dir_okay=False, exists=True, path_type=Path)
    return OptionGroup(
        "kafka",
        (
            bootstrap_option(required=required, environment=environment, help_text=help_text),
            shared_option("--security-protocol",
                          type=click.Choice(("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
                          default="PLAINTEXT", show_default=True,
                          help="How the clients talk to the brokers: TLS (SSL), SASL, both."),
            shared_option("--sasl-mechanism",
                          type=click.Choice(("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")),
                          default=None,
                          help="SASL mechanism (SASL_PLAINTEXT, SASL_SSL)."),
            shared_option("--sasl-username", default=None,
                          help="SASL user; the password comes from PLAYSTREAM_SASL_PASSWORD "
                               "or sasl_password in the configuration file, never from the "
                               "command line."),
            shared_option("--sasl-password", "sasl_password", cls=NotOnCommandLine,
                          default=None, hidden=True,
                          help="SASL password (environment or configuration file only)."),
            shared_option("--ssl-cafile", type=files, default=None,
                          help="PEM CA certificates that signed the brokers' certificates "
                               "(SSL, SASL_SSL; default: the system's CA store)."),
            shared_option("--ssl-certfile", type=files, default=None,
                          help="PEM client certificate, for brokers that check clients."),
            shared_option("--ssl-keyfile", type=files, default=None,
                          help="PEM private key of the client certificate."),
        ),
        ("bootstrap", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
         "ssl_cafile", "ssl_certfile", "ssl_keyfile"),
        _kafka_connection,
    )


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


def dlq_topic_option(default: str | None,
                     help_text: str = "Dead-letter topic.") -> Callable[[F], F]:
    return shared_option("--dlq-topic", default=default, show_default=default is not None,
                         help=help_text)


def chunks_topic_option(default: str) -> Callable[[F], F]:
    return shared_option("--chunks-topic", default=default, show_default=True,
                         help="Chunk announcement topic.")


# The processors and the finalizer must never share a consumer group, so each role's `--group`
# has its own key (one PLAYSTREAM_GROUP would put both in the same group).
def processor_group_option(fn: F) -> F:
    return shared_option("--group", "group", key="processor_group", default=PROCESSOR_GROUP,
                         show_default=True,
                         help="Consumer group of the stream processors: processors of one "
                              "group share the partitions.")(fn)


def finalizer_group_option() -> Callable[[F], F]:
    return shared_option("--group", "group", key="finalizer_group", default=FINALIZER_GROUP,
                         show_default=True,
                         help="Consumer group of the finalizer (holds its committed offsets).")


def chunk_store_option(*, required: bool, default: Path | None = None, must_exist: bool = False,
                       help_text: str = "Chunk store: a folder or s3://BUCKET/PREFIX."
                       ) -> Callable[[F], F]:
    # No `default=None` for a required option: click 8.3 takes an explicit None as a value
    # given, and would no longer say the option is missing.
    defaults = {} if default is None else {"default": default, "show_default": True}
    return shared_option("--chunks", "chunk_dir", type=StoreLocation(must_exist=must_exist),
                         required=required, help=help_text, **defaults)


def datasets_option(*, required: bool = True,
                    help_text: str = "Datasets folder: one dataset directory per configuration "
                                     "key.") -> Callable[[F], F]:
    """The finalizer's datasets folder. Its key is `datasets`, not `output`: every other
    command's --output is a file or folder of that one run, never a shared setting."""
    extra = {"required": True} if required else {}
    return shared_option("--output", "--datasets", "output", key="datasets",
                         type=StoreLocation(), help=help_text,
                         **extra)


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where a long-running command serves its Prometheus metrics; port 0 is off."""

    port: int
    host: str


metrics_options = OptionGroup(
    "metrics_endpoint",
    (
        shared_option("--metrics-port", type=click.IntRange(0, 65535), default=0,
                      show_default=True,
                      help="Serve Prometheus metrics (/metrics), /healthz and /readyz on "
                           "this port; 0 is off. Needs the metrics extra."),
        shared_option("--metrics-host", default="127.0.0.1", show_default=True,
                      help="Address the metrics port binds to."),
    ),
    ("metrics_port", "metrics_host"),
    lambda metrics_port, metrics_host: MetricsEndpoint(metrics_port, metrics_host),
)
