"""The deployment files against the real CLI: every `playstream` invocation in the compose
file and the systemd units is parsed by the real click commands (subcommand, options, value
types, required options) with the environment and the configuration file they are given,
without running anything. Docker and systemd are not needed."""
from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import click
import pytest
import yaml
from click.testing import CliRunner

from playstream.cli.config import CONFIG_ENV, apply_config, leaf_commands, read_toml
from playstream.cli.main import main

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
SYSTEMD = DEPLOY / "systemd"
ENV_EXAMPLE = SYSTEMD / "playstream.env.example"
CONFIG_EXAMPLE = DEPLOY / "playstream.toml"
INSTALLED_CONFIG = "/etc/playstream/playstream.toml"  # where both deployments put it
UNITS = {"playstream-selfplay@.service": "selfplay", "playstream-stream@.service": "stream",
         "playstream-finalize.service": "finalize"}
INSTANCE = "7"
# What may stay on a command line: what differs per instance (seed, spool), the mode, the log
# level, and selfplay's broker in compose (it is never read from the environment).
# What an instance of a template unit picks for itself (its seed, spool, metrics port).
PER_INSTANCE_FLAGS = {"--log-level", "--forever", "--seed", "--spool", "--metrics-port"}


def check_invocation(argv: list[str], where: str, env: dict[str, str] | None = None
                     ) -> click.Context:
    """Parse ``playstream <argv>`` with the real command group, as the shell would run it in
    the environment ``env`` (only those PLAYSTREAM_ variables; its PLAYSTREAM_CONFIG, the
    installed path, is read from deploy/playstream.toml), and return the subcommand's
    context; fails on an unknown subcommand or option, a bad value or a missing required
    option, wherever the value came from."""
    value_options = {o for p in main.params if isinstance(p, click.Option) and not p.is_flag
                     for o in p.opts}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in value_options else 1
    if i >= len(argv):
        pytest.fail(f"{where}: no subcommand in {argv}")
    name = argv[i]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PLAYSTREAM_")}
    environ.update(env or {})
    try:
        with mock.patch.dict(os.environ, environ, clear=True):
            group = main.make_context("playstream", [*argv[:i], name])
            config = group.params["config_file"]
            if config is not None:
                assert str(config) == INSTALLED_CONFIG, f"{where}: reads {config}"
                apply_config(group, CONFIG_EXAMPLE)
            command = main.get_command(group, name)
            if command is None:
                pytest.fail(f"{where}: `playstream {name}` does not exist (the CLI has "
                            f"{', '.join(sorted(main.commands))})")
            return command.make_context(name, argv[i + 1:], parent=group)
    except click.ClickException as err:
        pytest.fail(f"{where}: `playstream {' '.join(argv)}` is refused: {err.format_message()}")


def flags(argv: list[str]) -> set[str]:
    return {w for w in argv if w.startswith("--")}


def option(ctx: click.Context, flag: str) -> Any:
    """The parsed value of the option spelled ``flag``."""
    assert ctx.command is not None
    (param,) = [p for p in ctx.command.params if flag in p.opts]
    return ctx.params[param.name]  # type: ignore[index]


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit syntax: ``[Section]``, ``Key=Value`` (a key may repeat), ``#``/``;``
    comments, and a trailing backslash that continues the line."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    logical = re.sub(r"\\\n", " ", path.read_text())
    for number, line in enumerate(logical.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if m := re.fullmatch(r"\[([A-Za-z]+)\]", line):
            current = sections.setdefault(m[1], {})
            continue
        key, eq, value = line.partition("=")
        assert current is not None and eq and re.fullmatch(r"[A-Za-z]+", key.strip()), \
            f"{path.name}:{number}: not a Key=Value line in a section: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, eq, value = line.partition("=")
            assert eq and re.fullmatch(r"[A-Z_]+", key), f"{path.name}: bad line {line!r}"
            env[key] = value
    return env


def exec_start_argv(unit: str, exec_start: str, env: dict[str, str]) -> list[str]:
    """The arguments after ``playstream`` once systemd has expanded ``%i`` and ``${VAR}``."""
    words = shlex.split(exec_start.lstrip("-@:+!"))
    if words[0] == "/usr/bin/env":
        words = words[1:]
    assert words[0] == "playstream" or (PurePosixPath(words[0]).is_absolute()
                                        and PurePosixPath(words[0]).name == "playstream"), \
        f"{unit}: ExecStart runs {words[0]!r}, not playstream"

    def expand(word: str) -> str:
        word = word.replace("%i", INSTANCE).replace("%%", "%")
        missing = [v for v in re.findall(r"\$\{([A-Za-z_]+)\}", word) if v not in env]
        assert not missing, f"{unit}: {missing} not set in {ENV_EXAMPLE.name}"
        word = re.sub(r"\$\{([A-Za-z_]+)\}", lambda m: env[m[1]], word)
        assert "%" not in word and "$" not in word, f"{unit}: unexpanded {word!r}"
        return word

    return [expand(w) for w in words[1:]]


def under(path: str, roots: list[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(r) for r in roots)


# -- docker compose ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def test_compose_runs_a_single_kraft_kafka_node(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"] == "apache/kafka:4.3.1"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"].split(",")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert "ports" not in kafka  # the compose network only
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])


def test_every_compose_service_runs_a_real_playstream_command(
        compose: dict[str, Any]) -> None:
    contexts: dict[str, click.Context] = {}
    for name, service in compose["services"].items():
        if name == "kafka":
            continue
        command = service["command"]
        assert isinstance(command, list) and command[0] == "playstream", \
            f"service {name} does not run playstream: {command}"
        env = {k: str(v) for k, v in service["environment"].items()}
        assert env[CONFIG_ENV] == INSTALLED_CONFIG
        assert f"./{CONFIG_EXAMPLE.name}:{INSTALLED_CONFIG}:ro" in service["volumes"]
        argv = [str(w) for w in command[1:]]
        ctx = contexts[name] = check_invocation(argv, f"service {name}", env)
        # The settings come from the file and the environment, not from repeated flags.
        allowed = PER_INSTANCE_FLAGS | ({"--bootstrap-server"} if ctx.info_name == "selfplay"
                                        else set())
        assert flags(argv) <= allowed, f"service {name} repeats {flags(argv) - allowed}"
        assert option(ctx, "--bootstrap") == "kafka:9092"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert service["restart"] == "on-failure" and service["stop_signal"] == "SIGTERM"
    by_command: dict[str, list[str]] = {}
    for name, ctx in contexts.items():
        by_command.setdefault(ctx.info_name or "", []).append(name)
    assert {"selfplay", "stream", "finalize"} <= set(by_command)

    workers = [contexts[n] for n in by_command["selfplay"]]
    assert option(workers[0], "--forever")
    assert len({option(c, "--seed") for c in workers}) == len(workers)  # distinct games
    assert len({option(c, "--spool") for c in workers}) == len(workers)

    # Announcements carry absolute paths: processor and finalizer share the store's path,
    # and it lies on a volume both mount at the same place.
    (stream,) = [contexts[n] for n in by_command["stream"]]
    (finalize,) = [contexts[n] for n in by_command["finalize"]]
    chunks = str(option(stream, "--chunks"))
    assert str(option(finalize, "--chunks")) == chunks
    mounts = {name: [v.split(":")[1] for v in compose["services"][name]["volumes"]]
              for name in contexts}
    shared = set(mounts[by_command["stream"][0]]) & set(mounts[by_command["finalize"][0]])
    assert under(chunks, sorted(shared)) and under(str(option(finalize, "--output")),
                                                   sorted(shared))
    for name in by_command["selfplay"]:
        assert under(str(option(contexts[name], "--spool")), mounts[name])

    # every pipeline service serves its metrics on the port it exposes, to the network
    for name, ctx in contexts.items():
        port = option(ctx, "--metrics-port")
        assert port and compose["services"][name]["expose"] == [str(port)], name
        assert option(ctx, "--metrics-host") == "0.0.0.0", name
        assert "ports" not in compose["services"][name], name  # not published to the host


# -- systemd -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return parse_env(ENV_EXAMPLE)


def test_the_deploy_folder_holds_exactly_the_checked_units() -> None:
    assert sorted(p.name for p in SYSTEMD.glob("*.service")) == sorted(UNITS)


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_unit_runs_a_real_playstream_command_confined(unit: str,
                                                              env: dict[str, str]) -> None:
    service = parse_unit(SYSTEMD / unit)["Service"]
    single = {k: v[0] for k, v in service.items() if len(v) == 1}
    assert {k: single.get(k) for k in ("Restart", "KillSignal", "EnvironmentFile", "User",
                                       "NoNewPrivileges", "ProtectSystem")} == {
        "Restart": "on-failure", "KillSignal": "SIGTERM",
        "EnvironmentFile": "/etc/playstream/playstream.env", "User": "playstream",
        "NoNewPrivileges": "yes", "ProtectSystem": "strict"}
    writable = [p for line in service["ReadWritePaths"] for p in line.split()]
    assert writable

    (exec_start,) = service["ExecStart"]
    argv = exec_start_argv(unit, exec_start, env)
    ctx = check_invocation(argv, unit, env)
    assert ctx.info_name == UNITS[unit]
    assert flags(argv) <= PER_INSTANCE_FLAGS, f"{unit} repeats {flags(argv) - PER_INSTANCE_FLAGS}"
    config, _ = read_toml(CONFIG_EXAMPLE)
    assert option(ctx, "--bootstrap") == config[UNITS[unit]].get("bootstrap_servers",
                                                                 config["bootstrap_servers"])
    paths = [str(v) for f in ("--chunks", "--output", "--spool")
             if any(f in p.opts for p in ctx.command.params)
             and (v := option(ctx, f)) is not None]
    assert paths and all(under(p, writable) for p in paths), (paths, writable)
    if UNITS[unit] == "selfplay":  # the instance picks the seed and the spool
        assert option(ctx, "--forever")
        assert option(ctx, "--seed") == int(INSTANCE)
        assert PurePosixPath(str(option(ctx, "--spool"))).name.endswith(INSTANCE)
        assert "%i" in exec_start
    if UNITS[unit] in ("stream", "finalize"):
        assert str(option(ctx, "--chunks")) == config["chunks"]
        # metrics on the loopback only, a distinct port per unit (per instance for stream)
        assert option(ctx, "--metrics-host") == "127.0.0.1"
        assert option(ctx, "--metrics-port") == (
            int(f"941{INSTANCE}") if UNITS[unit] == "stream" else 9430)


# -- the configuration file ----------------------------------------------------------------
def test_the_example_config_holds_only_known_keys_with_valid_values() -> None:
    """Every key is an option (loading refuses any other, naming it), and every command it
    configures accepts its values: `config show COMMAND` converts them as the command would."""
    doc, _ = read_toml(CONFIG_EXAMPLE)
    tables = [k for k, v in doc.items() if isinstance(v, dict)]
    assert set(tables) <= set(leaf_commands(main)) and {"selfplay", "stream", "finalize"} <= \
        set(tables)
    for command in ("selfplay", "stream", "finalize"):
        result = CliRunner().invoke(main, ["--config", str(CONFIG_EXAMPLE), "config", "show",
                                           "--json", command], env={CONFIG_ENV: None})
        assert result.exit_code == 0, result.output
        shown = {o["key"]: o for o in json.loads(result.output)["options"]}
        for key, value in {**{k: v for k, v in doc.items() if k not in tables},
                           **doc[command]}.items():
            if key in shown:
                assert shown[key]["source"] == "config file", (command, key)
        assert {k for k, o in shown.items() if o["source"] == "missing"} <= {"games"}, command


# -- the checker itself --------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--log-level", "info", "no-such-command"], "`playstream no-such-command` does not exist"),
    (["compact", "--chunks", str(DEPLOY), "--output", "/y", "--no-such-option"],
     "No such option: --no-such-option"),
    (["compact", "--chunks", str(DEPLOY), "--output", "/y", "--window"],
     "Option '--window' requires an argument"),
    (["compact", "--chunks", str(DEPLOY / "no-such-folder"), "--output", "/y"],
     "Invalid value for '--chunks'"),
    (["compact", "--output", "/y"], "Missing option '--chunks'"),
    (["--log-level", "loud", "compact"], "Invalid value for '--log-level'"),
    (["export", "--board-type", "square8", "--num-players", "9", "--output", "/y"],
     "Invalid value for '--num-players'"),
])
def test_the_checker_refuses_what_the_cli_refuses(argv: list[str], message: str) -> None:
    with pytest.raises(pytest.fail.Exception, match=re.escape(message)):
        check_invocation(argv, "test")


def test_the_checker_returns_the_parsed_options() -> None:
    ctx = check_invocation(["--log-level", "info", "compact", "--chunks", str(DEPLOY), "--output",
                            "/y", "--shuffle", "--val-fraction", "0.25"], "test")
    assert ctx.info_name == "compact"
    assert (option(ctx, "--shuffle"), option(ctx, "--val-fraction")) == (True, 0.25)
    assert str(option(ctx, "--output")) == "/y"
