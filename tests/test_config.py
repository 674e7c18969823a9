"""Configuration: command line > environment > configuration file > default, on the real
commands; bad values and unknown keys name their source; secrets never printed; the key
table of docs/CONFIG.md is the code's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from playstream.chunks import ChunkStore
from playstream.cli.config import CONFIG_ENV, MAX_CONFIG_BYTES, keyed_options, leaf_commands
from playstream.cli.config import options_table, shared_options
from playstream.cli.main import main
from playstream.cli.options import shared_option
from playstream.dataset import load_npz_dataset
from playstream.errors import PlaystreamError
from playstream.gamefiles import JsonlWriter
from playstream.selfplay import generate_records

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "playstream.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any PLAYSTREAM_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYSTREAM_")}
    env.update(extra)
    return env


def run(*args: str | Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=clean_env(**(env or {})))


@pytest.fixture(autouse=True)
def no_playstream_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("PLAYSTREAM_")]:
        monkeypatch.delenv(name)


def cli(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """The real command group in this process (fast); `run` where a subprocess matters."""
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def show(*args: str | Path, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    result = cli("config", "show", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    return {o["key"]: o for o in json.loads(result.stdout)["options"]}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "playstream.toml"
    path.write_text('chunk_rows = 500\n'
                    'topic = "from-file"\n'
                    'history_length = 2\n'
                    '\n'
                    '[stream]\n'
                    'chunk_rows = 700\n'
                    'chunk_age = "5s"\n')
    return path


# -- precedence ----------------------------------------------------------------------------
def test_precedence_command_line_environment_file_default(config_file: Path) -> None:
    file_env = {CONFIG_ENV: str(config_file)}
    # The file: the [stream] table wins over the top level for stream; the rest is default.
    opts = show("stream", env=file_env)
    assert (opts["chunk_rows"]["value"], opts["chunk_rows"]["source"]) == (700, "config file")
    assert opts["chunk_rows"]["from"] == f"{config_file}, line 6, [stream]"
    assert (opts["topic"]["value"], opts["topic"]["from"]) == ("from-file",
                                                             f"{config_file}, line 2")
    assert opts["chunk_age"]["value"] == 5.0
    # No default version of its own: the chosen game's default applies at run time.
    assert (opts["feature_version"]["value"], opts["feature_version"]["source"]) == (None,
                                                                                   "default")
    # ... and the top level for a command without a table.
    assert show("export", env=file_env)["chunk_rows"]["value"] == 500
    # The environment beats the file.
    env = {**file_env, "PLAYSTREAM_CHUNK_ROWS": "99", "PLAYSTREAM_TOPIC": "from-env"}
    opts = show("stream", env=env)
    assert (opts["chunk_rows"]["value"], opts["chunk_rows"]["source"],
            opts["chunk_rows"]["from"]) == (99, "environment", "PLAYSTREAM_CHUNK_ROWS")
    assert opts["topic"]["value"] == "from-env"
    assert opts["history_length"]["source"] == "config file"
    # The command line beats the environment; `--config` names the file as well.
    opts = show("stream", "--chunk-rows", "5", "--topic", "from-cli", env=env)
    assert (opts["chunk_rows"]["value"], opts["chunk_rows"]["source"]) == (5, "command line")
    assert opts["topic"]["value"] == "from-cli"
    result = cli("--config", config_file, "config", "show", "--json", "stream")
    assert json.loads(result.stdout)["config_file"] == str(config_file)
    # Without a command: the shared options as the environment and the top level set them.
    opts = show(env=env)
    assert opts["chunk_rows"]["value"] == 99 and opts["history_length"]["value"] == 2
    assert "chunk_age" not in opts  # not shared


def test_export_takes_its_chunk_folder_from_the_environment_and_rows_from_the_file(
        tmp_path: Path) -> None:
    games = tmp_path / "games.jsonl"
    with JsonlWriter(games) as w:
        for record in generate_records(board_type="square8", num_players=2, agent="random",
                                       seed=1, count=6, node="t"):
            w.write(record)
    config = tmp_path / "c.toml"
    config.write_text("chunk_rows = 40\nprogress = false\n")
    chunks = tmp_path / "from-env-chunks"
    out = tmp_path / "out.npz"
    proc = run("export", "--jsonl", games, "--board-type", "square8", "--num-players", "2",
               "--output", out, env={CONFIG_ENV: str(config), "PLAYSTREAM_CHUNKS": str(chunks)})
    assert proc.returncode == 0, proc.stderr
    assert not Path(f"{out}.chunks").exists()
    store = ChunkStore(chunks)
    (key,) = store.config_keys()
    rows = len(load_npz_dataset(out).rows.game_id)
    # Chunks are sealed at game boundaries once they hold 40 rows (the file's chunk_rows):
    # several chunks, whereas the command line's --chunk-rows 20000 gives one.
    assert rows > 80 and len(store.sealed(key)) >= 2
    chunks_cli = tmp_path / "cli-chunks"
    proc = run("export", "--jsonl", games, "--board-type", "square8", "--num-players", "2",
               "--output", tmp_path / "out2.npz", "--chunk-rows", "20000",
               env={CONFIG_ENV: str(config), "PLAYSTREAM_CHUNKS": str(chunks_cli)})
    assert proc.returncode == 0, proc.stderr
    assert len(ChunkStore(chunks_cli).sealed(key)) == 1
    assert len(load_npz_dataset(tmp_path / "out2.npz").rows.game_id) == rows


# -- bootstrap servers ---------------------------------------------------------------------
def test_stream_takes_the_bootstrap_servers_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`stream` reaches its first broker call with the servers of the variable (stopped
    there: no broker is needed to see that the option is no longer missing)."""
    import playstream.producers.topics as topics

    seen: list[str] = []

    def stop_here(bootstrap: str, wanted: dict[str, int]) -> None:
        seen.append(bootstrap)
        raise PlaystreamError("stopped before the broker")

    monkeypatch.setattr(topics, "ensure_topics", stop_here)
    runner = CliRunner()
    result = runner.invoke(main, ["stream"],
                           env={"PLAYSTREAM_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"})
    assert "Missing option" not in result.output
    assert (result.exit_code, seen) == (1, ["k1:9092,k2:9092"])
    result = runner.invoke(main, ["stream"], env={"PLAYSTREAM_BOOTSTRAP_SERVERS": None})
    assert result.exit_code == 2 and "Missing option '--bootstrap-server'" in result.output
    assert ("Or set bootstrap_servers in the configuration file (the top level or [stream])"
            in result.output)
    assert seen == ["k1:9092,k2:9092"]


def test_selfplay_publishes_only_where_its_command_line_or_its_table_says(
        tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('bootstrap_servers = "shared:9092"\n')
    env = {CONFIG_ENV: str(config), "PLAYSTREAM_BOOTSTRAP_SERVERS": "env:9092"}
    out = tmp_path / "g.jsonl"
    result = cli("selfplay", "--board-type", "square8", "--num-players", "2", "--games", "2",
                 "--output", out, "--no-progress", env=env)
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 2
    assert show("selfplay", env=env)["bootstrap_servers"]["value"] is None
    config.write_text('bootstrap_servers = "shared:9092"\n[selfplay]\n'
                      'bootstrap_servers = "workers:9092"\n')
    opts = show("selfplay", env=env)
    assert (opts["bootstrap_servers"]["value"], opts["bootstrap_servers"]["from"]) == (
        "workers:9092", f"{config}, line 3, [selfplay]")


# -- bad values ----------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["stream"], ["export", "--jsonl", "g.jsonl", "--board-type",
                                                  "square8", "--num-players", "2", "--output",
                                                  "o.npz"]])
def test_a_bad_value_from_the_environment_names_the_option_and_the_variable(
        command: list[str]) -> None:
    proc = run(*command, env={"PLAYSTREAM_CHUNK_ROWS": "x",
                              "PLAYSTREAM_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    assert proc.returncode == 2
    assert ("Invalid value for '--chunk-rows': PLAYSTREAM_CHUNK_ROWS='x' (environment): not a "
            "valid integer") in proc.stderr


def test_a_bad_value_from_the_file_names_the_option_the_file_and_the_line(
        tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('bootstrap_servers = "127.0.0.1:9"\nchunk_rows = "x"\n'
                      '[finalize]\nevery = "soon"\n')
    proc = run("--config", config, "stream")
    assert proc.returncode == 2
    assert (f"Invalid value for '--chunk-rows': chunk_rows = \"x\" (config file {config}, "
            "line 2): not a valid integer") in proc.stderr
    result = cli("--config", config, "finalize", "--chunks", ".", "--output", "d")
    assert result.exit_code == 2
    assert (f"Invalid value for '--every': every = \"soon\" (config file {config}, line 4, "
            "[finalize]): not a duration") in result.stderr
    result = cli("config", "show", env={CONFIG_ENV: str(config)})  # show checks values too
    assert result.exit_code == 2 and f"(config file {config}, line 2)" in result.stderr


@pytest.mark.parametrize("text, message", [
    ('topic = "t"\nchunk_rowz = 5\n', "line=2 key=chunk_rowz: unknown key 'chunk_rowz' at the top"),
    ('every = "5m"\n', "line=1 key=every: unknown key 'every' at the top level: it is not "
                       "shared by several commands: set it in a [finalize] table"),
    ('[strem]\nchunk_rows = 5\n', "line=1 key=strem: unknown table [strem]"),
    ('[stream]\n\nchunk_agee = "5s"\n', "line=3 key=stream.chunk_agee: unknown key 'chunk_agee'"
                                        " in [stream]"),
    ('shuffle = 1\n', "key=shuffle: --shuffle takes true or false"),
    ('chunk_rows = true\n', "key=chunk_rows: --chunk-rows takes a value, not true"),
    ('window = ["all"]\n', "key=window: --window takes one value, not a list"),
    ('chunk_rows = \n', "not valid TOML"),
])
def test_the_file_is_checked_against_the_commands(tmp_path: Path, text: str,
                                                  message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    for args in (["validate", "--help"], ["config", "show"]):  # any command: read first
        result = cli(*args, env={CONFIG_ENV: str(config)})
        assert result.exit_code == 2, result.output
        assert f"file={config}" in result.stderr and message in result.stderr, result.stderr
        assert f"(from {CONFIG_ENV})" in result.stderr


def test_the_file_is_bounded_and_must_exist(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    result = cli("--config", big, "config", "show")
    assert result.exit_code == 2 and "larger than 1 MiB" in result.stderr
    proc = run("--config", tmp_path / "nope.toml", "config", "show")  # as a user meets it
    assert proc.returncode == 2 and f"file={tmp_path / 'nope.toml'}" in proc.stderr
    assert "No such file or directory" in proc.stderr


# -- secrets -------------------------------------------------------------------------------
@pytest.fixture
def with_secret_option(monkeypatch: pytest.MonkeyPatch) -> str:
    """A command with a secret shared option, as the security options will be."""

    @click.command("probe")
    @shared_option("--sasl-password", default=None)
    @shared_option("--retries", type=int, default=3)
    def probe(sasl_password: str | None, retries: int) -> None:
        click.echo("ran")

    monkeypatch.setitem(main.commands, "probe", probe)
    return "hunter2"


def test_secrets_are_masked_wherever_they_come_from(tmp_path: Path,
                                                    with_secret_option: str) -> None:
    secret = with_secret_option
    runner = CliRunner()
    env = {"PLAYSTREAM_SASL_PASSWORD": secret}
    for args in (["config", "show", "--json", "probe"], ["config", "show", "--json"],
                 ["config", "show", "probe"]):
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
        assert secret not in result.output and "***" in result.output
    opts = {o["key"]: o for o in json.loads(
        runner.invoke(main, ["config", "show", "--json", "probe"], env=env).output)["options"]}
    assert opts["sasl_password"] == {"key": "sasl_password", "option": "--sasl-password",
                                     "env": "PLAYSTREAM_SASL_PASSWORD", "value": "***",
                                     "source": "environment", "from": "PLAYSTREAM_SASL_PASSWORD"}
    config = tmp_path / "c.toml"
    config.write_text(f'[probe]\nsasl_password = "{secret}"\n')
    result = runner.invoke(main, ["--config", str(config), "config", "show", "probe"])
    assert secret not in result.output and "sasl_password = \"***\"" in result.output
    assert runner.invoke(main, ["--config", str(config), "probe"]).output == "ran\n"


def test_an_error_never_prints_a_secret(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command("probe")
    @shared_option("--api-secret", type=int, default=None)
    def probe(api_secret: int | None) -> None:
        raise AssertionError("not reached")

    monkeypatch.setitem(main.commands, "probe", probe)
    result = CliRunner().invoke(main, ["probe"], env={"PLAYSTREAM_API_SECRET": "s3cr3t"})
    assert result.exit_code == 2
    assert "PLAYSTREAM_API_SECRET=*** (environment)" in result.output
    assert "s3cr3t" not in result.output


# -- the documentation is the code's -------------------------------------------------------
def test_docs_config_table_is_generated_from_the_options() -> None:
    doc = (ROOT / "docs" / "CONFIG.md").read_text()
    table = options_table(main)
    assert table in doc, ("docs/CONFIG.md is out of date: replace its key table with the "
                          "output of `playstream config options`")
    readme = (ROOT / "README.md").read_text()
    missing = [param.envvar for users in shared_options(main).values()
               for _, param in users[:1] if f"`{param.envvar}`" not in readme]
    assert not missing
    assert "PLAYSTREAM_CONFIG" in readme and "docs/CONFIG.md" in readme


def test_every_option_of_a_command_has_its_own_key() -> None:
    for name, command in leaf_commands(main).items():
        exposed = [p for p in command.params if isinstance(p, click.Option) and p.expose_value]
        assert len(keyed_options(command)) == len(exposed), name
    # One key, one meaning: a shared key means the same option in every command it is in.
    for key, users in shared_options(main).items():
        assert len({(p.envvar, tuple(p.opts)) for _, p in users}) == 1, key


def test_a_shared_option_declared_outside_shared_option_would_show(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard against drift: an option spelled the same in several commands is a shared one
    (declared through shared_option), unless it is listed here with the reason."""
    per_run = {
        "--output": "a file or folder of this run (finalize's datasets folder is shared)",
        "--db": "input of this run", "--jsonl": "input of this run",
        "--board-type": "what this run plays or exports", "--num-players": "idem",
        "--game": "idem", "--games": "idem", "--agent": "idem",
        "--spool": "one per worker or per backfilled file: never shared",
        "--timeout": "different meanings (publish: broker wait, demo: whole run)",
        "--from": "different types (stream: a time, replay: earliest or a time)",
        "--seed": "selfplay's picks the games; the compaction one is shuffle_seed",
        "--group": "one key per role (processor_group, finalizer_group); replay's is per run",
        "--config": "compact's configuration key; the file is the group's --config",
        "--bootstrap-server": "shared, but selfplay's and demo's are explicit only",
        "--bootstrap": "idem",
        "--rejects": "a file of this run's skipped records",
        "--allow-empty": "a decision about this run's result",
        "--json": "the output format of this run",
    }
    seen: dict[str, set[str]] = {}
    for name, command in leaf_commands(main).items():
        for param in keyed_options(command).values():
            if not getattr(param, "shared", False):
                for opt in param.opts:
                    seen.setdefault(opt, set()).add(name)
    unshared = {o for o, names in seen.items() if len(names) > 1} - set(per_run)
    assert not unshared, f"options in several commands but not shared: {sorted(unshared)}"


# -- a real broker -------------------------------------------------------------------------
@pytest.mark.kafka
def test_finalize_runs_on_a_real_broker_configured_by_environment_and_file(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'chunks = "{tmp_path / "chunks"}"\ndatasets = "{tmp_path / "datasets"}"\n'
                      f'chunks_topic = "{topic_prefix}.chunks"\n'
                      f'[finalize]\nonce = true\nfinalizer_group = "{topic_prefix}-finalizer"\n')
    (tmp_path / "chunks").mkdir()
    proc = run("finalize", env={CONFIG_ENV: str(config),
                                "PLAYSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("finalize: announcements=0 ")


def test_the_demo_never_takes_a_broker_or_settings_from_the_callers_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from playstream.cli.demo import _spawn

    config = tmp_path / "c.toml"
    config.write_text('bootstrap_servers = "prod:9092"\nchunk_rows = 7\n')
    env = {CONFIG_ENV: str(config), "PLAYSTREAM_BOOTSTRAP_SERVERS": "prod:9092"}
    assert show("demo", env=env)["bootstrap_servers"]["value"] is None
    # The processes it starts see none of it.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PLAYSTREAM_CHUNK_ROWS", "9")
    log = tmp_path / "child.log"
    assert _spawn(["config", "show", "--json", "stream"], log).wait(60) == 0
    shown = json.loads(log.read_text())
    assert shown["config_file"] is None
    assert {o["key"]: o["source"] for o in shown["options"]}["chunk_rows"] == "default"
