"""The configuration file (``--config FILE`` or ``PLAYSTREAM_CONFIG``), where each option's
value came from, and ``playstream config show|options``.

Layout (docs/CONFIG.md): top-level keys set shared options for every command that has them
(``bootstrap_servers = "kafka1:9092"``, ``chunks = "/var/lib/playstream/chunks"``); a
``[command]`` table sets any option of that one command, shared or not (``[finalize]
every = "5m"``), and wins over the top level for it. The file becomes click's ``default_map``,
so precedence is click's own: command line, environment, file, default. Every key is checked
against the real commands when the file is read: a typo is an error naming the key, the file
and the line, not a setting silently ignored.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from playstream.cli.options import SharedOption, is_secret, option_key
from playstream.errors import ConfigFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_ENV = "PLAYSTREAM_CONFIG"
MAX_CONFIG_BYTES = 1 << 20
MASK = "***"
_META = "playstream.config"
# click >= 8.2 leaves this sentinel in place of an option that got no value at all.
_UNSET = getattr(click.core, "UNSET", object())


@dataclass(frozen=True)
class Setting:
    """One value of the file: its key, its table (None: the top level) and its line."""

    key: str
    table: str | None
    line: int | None
    value: Any  # as written in the file
    path: Path
    given: Any  # what click converts (`_for_click`)

    @property
    def where(self) -> str:
        table = f", [{self.table}]" if self.table else ""
        line = f", line {self.line}" if self.line else ""
        return f"{self.path}{line}{table}"


@dataclass(frozen=True)
class ConfigFile:
    """A checked configuration file: which value each (command, parameter) takes from it."""

    path: Path
    top: dict[str, Setting]
    settings: dict[tuple[str, str], Setting]

    def default_map(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (command, param), setting in self.settings.items():
            out.setdefault(command, {})[param] = setting.given
        return out


def leaf_commands(group: click.Group) -> dict[str, click.Command]:
    """The commands a ``[command]`` table can name (not the groups, such as ``config``)."""
    return {name: cmd for name, cmd in sorted(group.commands.items())
            if not isinstance(cmd, click.Group)}


def keyed_options(command: click.Command) -> dict[str, click.Option]:
    """The options of ``command`` by their configuration key (help and the like excluded)."""
    return {option_key(p): p for p in command.params
            if isinstance(p, click.Option) and p.expose_value}


def shared_options(group: click.Group) -> dict[str, list[tuple[str, SharedOption]]]:
    """Each top-level key and the (command, option) pairs it sets."""
    out: dict[str, list[tuple[str, SharedOption]]] = {}
    for name, command in leaf_commands(group).items():
        for key, param in keyed_options(command).items():
            if isinstance(param, SharedOption) and param.shared:
                out.setdefault(key, []).append((name, param))
    return dict(sorted(out.items()))


_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _key_lines(text: str) -> dict[tuple[str | None, str], int]:
    """The line of each ``key =`` per table: tomllib reports none, and an error that names
    the line is found at once. Flat layouts only (which is all the file may hold)."""
    lines: dict[tuple[str | None, str], int] = {}
    table: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if m := _TABLE.match(line):
            table = m[1]
            lines.setdefault((None, table), number)
        elif m := _KEY.match(line):
            lines.setdefault((table, m[1]), number)
    return lines


def read_toml(path: Path) -> tuple[dict[str, Any], dict[tuple[str | None, str], int]]:
    """The parsed file and its key lines; bounded, so a wrong path (a log, a device) fails
    fast instead of being read whole."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigFileError(f"cannot read the configuration file: {err.strerror or err}",
                              file=str(path)) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"the configuration file is larger than {MAX_CONFIG_BYTES >> 20} "
                              "MiB", file=str(path))
    try:
        text = data.decode("utf-8")
        return tomllib.loads(text), _key_lines(text)
    except UnicodeDecodeError as err:
        raise ConfigFileError(f"not UTF-8 text ({err.reason} at byte {err.start})",
                              file=str(path)) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigFileError(f"not valid TOML: {err}", file=str(path)) from None


def _is_bool(option: click.Option) -> bool:
    return option.is_flag or isinstance(option.type, click.types.BoolParamType)


def _is_number(option: click.Option) -> bool:
    return isinstance(option.type, (click.types.IntParamType, click.types.FloatParamType))


def _for_click(value: Any, option: click.Option, where: dict[str, Any]) -> Any:
    """The file's value in the shape click converts like a command-line word: a list only for
    repeatable options, never a table, true/false only (and always) for flags, numbers as
    text for options that take text. Everything else is checked by the option's own type,
    whose error then names the file and line (`with_source`)."""
    name = option.opts[0]
    if option.multiple or option.nargs != 1:
        if not isinstance(value, list):
            raise ConfigFileError(f"{name} takes a list (e.g. [\"a\", \"b\"])", **where)
        return [_for_click(v, _single(option), where) for v in value]
    if isinstance(value, (dict, list)):
        raise ConfigFileError(f"{name} takes one value, not a "
                              f"{'list' if isinstance(value, list) else 'table'}", **where)
    if _is_bool(option) != isinstance(value, bool):
        raise ConfigFileError(f"{name} takes " + ("true or false" if _is_bool(option)
                                                  else f"a value, not {_toml(value)}"), **where)
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and not _is_number(option):
        return str(value)
    return value


def _single(option: click.Option) -> click.Option:
    """``option`` as one occurrence, to check the items of a repeatable option's list."""
    return click.Option(option.opts, type=option.type, is_flag=option.is_flag)


def load_config(path: Path, group: click.Group) -> ConfigFile:
    """Read and check ``path`` against the commands of ``group``."""
    path = path.absolute()
    doc, lines = read_toml(path)
    commands = leaf_commands(group)
    shared = shared_options(group)
    top: dict[str, Setting] = {}
    settings: dict[tuple[str, str], Setting] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in doc.items():
        where = {"file": str(path), "line": lines.get((None, key)), "key": key}
        if isinstance(value, dict):
            if key not in commands:
                raise ConfigFileError(f"unknown table [{key}]: a table is named after a "
                                      f"command ({', '.join(commands)})", **where)
            tables[key] = value
        elif key in shared:
            top[key] = Setting(key, None, where["line"], value, path,
                               _for_click(value, shared[key][0][1], where))
            for command, param in shared[key]:
                settings[(command, param.name or key)] = top[key]
        else:
            users = [n for n, c in commands.items() if key in keyed_options(c)]
            hint = (f"it is not shared by several commands: set it in a [{users[0]}] table"
                    if users else f"the shared options are {', '.join(shared)}")
            raise ConfigFileError(f"unknown key {key!r} at the top level: {hint}", **where)
    for table, values in tables.items():
        options = keyed_options(commands[table])
        for key, value in values.items():
            where = {"file": str(path), "line": lines.get((table, key)), "key": f"{table}.{key}"}
            if key not in options:
                raise ConfigFileError(f"unknown key {key!r} in [{table}]: `playstream {table}`"
                                      f" has no such option ({', '.join(options)})", **where)
            settings[(table, options[key].name or key)] = Setting(
                key, table, where["line"], value, path, _for_click(value, options[key], where))
    return ConfigFile(path, top, settings)


def apply_config(ctx: click.Context, path: Path | None) -> None:
    """Make ``path`` the defaults of every subcommand of ``ctx`` (called by the group before
    the subcommand parses its options). A bad file is a usage error: exit 2."""
    if path is None:
        return
    assert isinstance(ctx.command, click.Group)
    try:
        config = load_config(path, ctx.command)
    except ConfigFileError as err:
        source = ctx.get_parameter_source("config_file")
        via = f" (from {CONFIG_ENV})" if source is ParameterSource.ENVIRONMENT else ""
        raise click.UsageError(f"{err}{via}", ctx) from None
    ctx.meta[_META] = config
    ctx.default_map = config.default_map()


def loaded_config(ctx: click.Context) -> ConfigFile | None:
    return ctx.meta.get(_META)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


Settings = dict[str, Setting]  # parameter name → the file's value for it


@dataclass(frozen=True)
class Origin:
    """Where an option's value came from, for people (``label``) and for scripts."""

    source: str  # command line | environment | config file | default | missing
    detail: str | None  # the variable name, or the file, line and table
    setting: Setting | None = None  # the file's value, when it came from the file

    @property
    def label(self) -> str:
        return f"{self.source} {self.detail}" if self.detail else self.source


def command_settings(ctx: click.Context) -> Settings:
    """What the loaded file sets for the command of ``ctx``."""
    config = loaded_config(ctx)
    name = ctx.command.name or ""
    return {p: s for (c, p), s in config.settings.items() if c == name} if config else {}


def origin(ctx: click.Context, param: click.Parameter, settings: Settings | None = None
           ) -> Origin:
    """Where ``param``'s value in ``ctx`` came from (after ``ctx`` parsed it); ``settings``:
    the file's values the context was given (default: the command's own)."""
    source = ctx.get_parameter_source(param.name or "")
    if source is ParameterSource.ENVIRONMENT:
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        return Origin("environment", next((v for v in names if os.environ.get(v)), None))
    if source is ParameterSource.DEFAULT_MAP:
        setting = (command_settings(ctx) if settings is None else settings).get(param.name or "")
        return Origin("config file", setting.where if setting else None, setting)
    if source is ParameterSource.COMMANDLINE:
        return Origin("command line", None)
    return Origin("default", None)


class SourcedBadParameter(click.BadParameter):
    """A bad value whose message already says where it was written."""


def with_source(err: click.BadParameter, settings: Settings | None = None
                ) -> click.BadParameter:
    """Click's error for a bad value, saying where the value was written when that was not
    the command line: ``PLAYSTREAM_CHUNK_ROWS='x' (environment): not a valid integer`` or
    ``chunk_rows = "x" (config file /etc/playstream/playstream.toml, line 3): ...``."""
    ctx, param = err.ctx, err.param
    if ctx is None or not isinstance(param, click.Option) or isinstance(err,
                                                                        SourcedBadParameter):
        return err
    if isinstance(err, click.MissingParameter):
        if not err.message:  # say the other places it can be set
            key, name = option_key(param), ctx.command.name
            shared = isinstance(param, SharedOption) and param.shared
            err.message = (f"Or set {key} in the configuration file (the top level or "
                           f"[{name}])" if shared else
                           f"Or set {key} in the configuration file's [{name}] table")
        return err
    where = origin(ctx, param, settings)
    secret = is_secret(option_key(param))
    if where.source == "environment" and where.detail:
        raw: Any = os.environ[where.detail]
        said = f"{where.detail}={MASK if secret else repr(raw)} (environment)"
    elif where.setting is not None:
        raw = where.setting.value
        said = (f"{where.setting.key} = {MASK if secret else _toml(raw)} "
                f"(config file {where.setting.where})")
    else:
        return err
    reason = err.message.rstrip(".")
    for shown in (repr(raw), str(raw)):
        if reason.startswith(f"{shown} is "):
            reason = reason[len(shown) + 4:]
            break
    if secret:
        reason = reason.replace(str(raw), MASK)
    # The hint without click's own "(env var: ...)": the message says where, once.
    hint = " / ".join(repr(o) for o in param.opts)
    return SourcedBadParameter(f"{said}: {reason}", ctx=ctx, param=param, param_hint=hint)


# -- playstream config ---------------------------------------------------------------------
@dataclass(frozen=True)
class Effective:
    key: str
    option: str
    env: str | None
    value: Any
    origin: Origin

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "option": self.option, "env": self.env, "value": self.value,
                "source": self.origin.source, "from": self.origin.detail}


def _plain(value: Any, secret: bool) -> Any:
    """A JSON value to print: paths and times as text, tuples as lists, secrets masked."""
    if value is _UNSET or value is None:
        return None
    if secret:
        return MASK
    if isinstance(value, (list, tuple)):
        return [_plain(v, False) for v in value]
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def resolve(root: click.Context, name: str, command: click.Command, args: list[str],
            settings: Settings) -> dict[str, tuple[click.Option, Any, Origin]]:
    """Each option's value exactly as ``playstream NAME ARGS`` would see it with the file's
    ``settings``, without running it; a missing required option is reported as missing
    instead of failing, a bad value fails as it would (exit 2, naming its source)."""
    ctx = click.Context(command, info_name=name, parent=root,
                        default_map={p: s.given for p, s in settings.items()})
    opts, _, _ = command.make_parser(ctx).parse_args(args=list(args))
    out: dict[str, tuple[click.Option, Any, Origin]] = {}
    for key, param in keyed_options(command).items():
        try:
            value, _ = param.handle_parse_result(ctx, opts, [])
        except click.MissingParameter:
            out[key] = (param, None, Origin("missing", "required, not set"))
            continue
        except click.BadParameter as err:
            raise with_source(err, settings) from None
        out[key] = (param, value, origin(ctx, param, settings))
    return out


def _effective(key: str, param: click.Option, value: Any, where: Origin) -> Effective:
    env = param.envvar if isinstance(param.envvar, str) else None
    return Effective(key, param.opts[0], env, _plain(value, is_secret(key)), where)


def effective_options(root: click.Context, command_name: str | None,
                      args: list[str]) -> list[Effective]:
    """Every option of ``command_name`` (with ``args`` as its command line), or, without a
    command, every shared option as the environment and the file's top level set it."""
    group = root.command
    assert isinstance(group, click.Group)
    commands = leaf_commands(group)
    if command_name is not None:
        if command_name not in commands:
            raise click.BadParameter(f"no such command (one of {', '.join(commands)})",
                                     param_hint="COMMAND")
        config = loaded_config(root)
        settings = {p: s for (c, p), s in config.settings.items()
                    if c == command_name} if config else {}
        return [_effective(k, p, v, o) for k, (p, v, o)
                in resolve(root, command_name, commands[command_name], args, settings).items()]
    if args:
        raise click.UsageError("options after the command only: config show COMMAND [ARGS]")
    config = loaded_config(root)
    rows = []
    for key, users in shared_options(group).items():
        resolved_param, value, where = _first_accepted(root, key, users, commands, config)
        defaults = {repr(_plain(p.default, False)) for _, p in users}
        if where.source in ("default", "missing") and len(defaults) > 1:
            value, where = None, Origin("default", "differs by command: config show COMMAND")
        rows.append(_effective(key, resolved_param, value, where))
    return rows


def _first_accepted(root: click.Context, key: str, users: list[tuple[str, SharedOption]],
                    commands: dict[str, click.Command], config: ConfigFile | None
                    ) -> tuple[click.Option, Any, Origin]:
    """A shared option as the first of its commands that accepts the value resolves it (the
    environment and the top level only): a chunk folder that `compact` refuses because it
    does not exist yet is fine for `stream`, which creates it. Every command refusing it is
    the first command's error."""
    first: click.BadParameter | None = None
    for name, param in users:
        top = {param.name or key: config.top[key]} if config and key in config.top else {}
        try:
            return resolve(root, name, commands[name], [], top)[key]
        except click.BadParameter as err:
            first = first or err
    assert first is not None
    raise first


@click.group("config")
def config_cmd() -> None:
    """The configuration: effective values and where they come from, and every key."""


@config_cmd.command("show", context_settings={"ignore_unknown_options": True,
                                              "allow_interspersed_args": False})
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.argument("command_name", metavar="[COMMAND]", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def show_cmd(ctx: click.Context, as_json: bool, command_name: str | None,
             args: tuple[str, ...]) -> None:
    """Print the effective value of each option and where it came from: command line,
    environment (the variable), config file (file, line, table) or default.

    With COMMAND, every option of that command as `playstream COMMAND ARGS...` would see it
    (nothing is run); without, every shared option. Secrets are printed as ***.
    """
    root = ctx.find_root()
    try:
        rows = effective_options(root, command_name, list(args))
    except SourcedBadParameter as err:
        err.ctx = ctx  # the usage line of `config show`, not of the command resolved
        raise
    config = loaded_config(root)
    if as_json:
        click.echo(json.dumps({"command": command_name,
                               "config_file": str(config.path) if config else None,
                               "options": [r.as_json() for r in rows]}, indent=2))
        return
    click.echo(f"# config file: {config.path if config else 'none'}")
    width = max((len(r.key) for r in rows), default=0)
    for r in rows:
        value = "(not set)" if r.value is None else _toml(r.value)
        click.echo(f"{r.key.ljust(width)} = {value}  # {r.origin.label}")


def options_table(group: click.Group) -> str:
    """The Markdown table of docs/CONFIG.md, generated from the declarations so that the
    documentation cannot drift (tests/test_config.py compares them)."""
    lines = ["| key (file) | environment | option | commands | default |",
             "| --- | --- | --- | --- | --- |"]
    for key, users in shared_options(group).items():
        param = users[0][1]
        defaults = {repr(_plain(p.default, False)) for _, p in users}
        default = _plain(param.default, False)
        shown = ("differs by command" if len(defaults) > 1
                 else "" if default is None else f"`{_toml(default)}`")
        flags = ", ".join(f"`{o}`" for o in param.opts + param.secondary_opts)
        lines.append(f"| `{key}` | `{param.envvar}` | {flags} | "
                     f"{', '.join(n for n, _ in users)} | {shown} |")
    return "\n".join(lines) + "\n"


@config_cmd.command("options")
@click.pass_context
def options_cmd(ctx: click.Context) -> None:
    """Print every shared option: its file key, environment variable, flags, commands and
    default (the table of docs/CONFIG.md)."""
    group = ctx.find_root().command
    assert isinstance(group, click.Group)
    click.echo(options_table(group), nl=False)
