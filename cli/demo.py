"""`playstream demo`: the whole streaming pipeline on one machine, for a bounded run.

Starts a local Kafka broker (unless --bootstrap is given), creates the topics, then runs the
real commands as separate processes, as a deployment would: self-play workers publishing,
one stream processor, the finalizer. It waits until the dataset holds every game, stops
everything it started and prints where the dataset is.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from playstream.chunks import ChunkMetadata, ChunkStore
from playstream.cli.common import Summary, kafka_extra, progress, reports_errors
from playstream.cli.options import ENV_PREFIX, bootstrap_option
from playstream.compaction.publish import read_manifest
from playstream.encoders.versions import ExportSettings
from playstream.errors import PlaystreamError
from playstream.games import get_game
from playstream.topics import DEFAULT_CHUNKS_TOPIC, DEFAULT_DLQ_TOPIC, DEFAULT_GAMES_TOPIC

CLI = [sys.executable, "-m", "playstream"]
POLL_S = 0.5


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """The demo is self-contained: its processes see no PLAYSTREAM_CONFIG or PLAYSTREAM_<KEY>
    of the operator's shell, which could point them at a production cluster or folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    with open(log, "ab") as fh:
        return subprocess.Popen([*CLI, *args], stdout=fh, stderr=subprocess.STDOUT, env=env)


def _stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _sealed_games(store: ChunkStore, key: str, seen: dict[Path, int]) -> int:
    """Games in the sealed chunks of ``key``; ``seen`` keeps each chunk's count, so a poll
    only reads the metadata of chunks sealed since the last one (sealed chunks never change)."""
    for _, path in store.sealed(key):
        if path not in seen:
            seen[path] = len(ChunkMetadata.read(path).games)
    return sum(seen.values())


def _published_games(dataset: Path) -> int:
    try:
        return int(sum(o["games"] for o in read_manifest(dataset)["outputs"]))
    except (PlaystreamError, OSError, KeyError):
        return 0


@click.command("demo")
# Explicit only, as for selfplay: a PLAYSTREAM_BOOTSTRAP_SERVERS or a configuration file set
# for a production cluster must not turn the demo loose on it.
@bootstrap_option(required=False, environment=False,
                  help_text="Use this broker (HOST:PORT[,...]) instead of starting a local one.")
@click.option("--dir", "work_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("playstream-demo"), show_default=True,
              help="Where the broker, spools, chunks, datasets and logs go.")
@click.option("--games", type=click.IntRange(1, None), default=200, show_default=True,
              help="Games to play, split across the workers.")
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Self-play worker processes.")
@click.option("--board-type", default=None,
              help="Board of the built-in connect game (default: its first board type).")
@click.option("--num-players", type=click.IntRange(2, 4), default=2, show_default=True,
              help="Players per game.")
@click.option("--agent", type=click.Choice(["random", "mcts"]), default="random",
              show_default=True, help="Self-play agent.")
@click.option("--timeout", type=click.IntRange(10, None), default=600, show_default=True,
              help="Seconds to wait for the dataset before giving up.")
@reports_errors
def demo_cmd(bootstrap: str | None, work_dir: Path, games: int, workers: int,
             board_type: str | None,
             num_players: int, agent: str, timeout: int) -> None:
    """Run self-play → Kafka → stream processor → finalizer for a bounded number of games."""
    with kafka_extra("demo"):
        from playstream.localkafka import LocalKafka
        from playstream.producers.topics import ensure_topics
    work_dir = work_dir.resolve()
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    board_type = board_type or get_game("connect").board_types[0]
    key = ExportSettings(board_type=board_type, num_players=num_players).dataset_config().key()
    chunks, datasets = work_dir / "chunks", work_dir / "datasets"
    broker = None
    summary = Summary("demo")
    services: list[subprocess.Popen[bytes]] = []
    producers: list[subprocess.Popen[bytes]] = []
    try:
        if bootstrap is None:
            click.echo(f"starting a local Kafka broker in {work_dir / 'kafka'} ...")
            broker = LocalKafka(work_dir / "kafka")
            bootstrap = broker.start()
        ensure_topics(bootstrap, {DEFAULT_GAMES_TOPIC: 4, DEFAULT_DLQ_TOPIC: 1,
                                  DEFAULT_CHUNKS_TOPIC: 1})
        store = ChunkStore(chunks)
        counted: dict[Path, int] = {}
        already = _sealed_games(store, key, counted)
        services.append(_spawn(["stream", "--bootstrap", bootstrap, "--chunks", str(chunks),
                                "--chunk-age", "2s", "--chunk-rows", "5000"],
                               logs / "stream.log"))
        services.append(_spawn(["finalize", "--bootstrap", bootstrap, "--chunks", str(chunks),
                                "--output", str(datasets), "--every", "2s",
                                "--val-fraction", "0.1", "--shuffle"],
                               logs / "finalize.log"))
        per_worker = [games // workers + (i < games % workers) for i in range(workers)]
        run_seed = int(time.time())
        producers += [_spawn(["selfplay", "--bootstrap", bootstrap, "--board-type", board_type,
                             "--num-players", str(num_players), "--games", str(n),
                             "--agent", agent, "--seed", str(run_seed), "--worker", f"demo{i}",
                             "--spool", str(work_dir / f"spool-{i}"), "--no-progress"],
                            logs / f"selfplay-{i}.log")
                     for i, n in enumerate(per_worker) if n]
        target = already + games
        deadline = time.monotonic() + timeout
        with progress(target, "games in sealed chunks", "game") as bar:
            while (sealed := _sealed_games(store, key, counted)) < target:
                bar.update(sealed - bar.n)
                failed = [p for p in producers + services if p.poll() not in (None, 0)]
                if failed:
                    raise PlaystreamError(f"a pipeline process failed (exit "
                                          f"{failed[0].returncode}); see {logs}")
                if time.monotonic() > deadline:
                    raise PlaystreamError(f"only {sealed} of {target} games after {timeout}s; "
                                          f"see {logs}")
                time.sleep(POLL_S)
            bar.update(sealed - bar.n)
        with progress(target, "games in the published dataset", "game") as bar:
            while (published := _published_games(datasets / key)) < target:
                bar.update(published - bar.n)
                if time.monotonic() > deadline:
                    raise PlaystreamError(f"the finalizer published {published} of {target} "
                                          f"games after {timeout}s; see {logs}")
                time.sleep(POLL_S)
        summary.count("games", games)
        summary.count("dataset_games", published)
        current = (datasets / key / "current").resolve()
        summary.outputs.extend(sorted(current.glob("*.npz")))
    finally:
        _stop(producers + services)
        if broker is not None:
            broker.stop()
    summary.echo()
    click.echo(f"dataset: {datasets / key / 'current'}  (manifest.json lists every chunk)")
    click.echo(f"logs: {logs}{os.linesep}next: playstream validate "
               f"{datasets / key / 'current' / 'train.npz'} --detailed")
