"""The commands on a secured cluster (issue 10 §2): the whole pipeline over SASL/SCRAM and
over TLS, configured the way the README says (a configuration file, the password in the
environment); refused credentials and untrusted certificates as one clear line; a refused
self-play worker keeps its games in the spool until the credentials are fixed.

The broker is `secure_kafka` (tests/kafka_security_fixtures.py): SASL_PLAINTEXT (SCRAM and
PLAIN users), SSL and SASL_SSL listeners with a CA made at test time."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from playstream.chunks import ChunkMetadata, ChunkStore
from playstream.cli.config import CONFIG_ENV
from playstream.clients.kafka import KafkaConnection
from playstream.dataset import load_npz_dataset
from playstream.gamefiles import JsonlWriter
from playstream.localkafka import LocalKafka
from playstream.producers.kafkaclient import StopIOFirstClient
from playstream.producers.spool import Spool
from playstream.records import GameRecord, decode_msgpack
from playstream.selfplay import generate_records

pytestmark = pytest.mark.kafka

CLI = [sys.executable, "-m", "playstream.cli"]
KEY = "connect-1_square8_2p_v2_h3"
# A refusal is found by one probe connection; the clients' own bootstrap timeout is 10-30 s.
FAST_S = 8.0


def config_file(path: Path, conn: KafkaConnection, prefix: str) -> Path:
    """The README's layout: every setting in the file but the password."""
    lines = [f'bootstrap_servers = "{conn.bootstrap}"',
             f'security_protocol = "{conn.security_protocol}"',
             f'topic = "{prefix}.games"', f'dlq_topic = "{prefix}.dlq"',
             f'chunks_topic = "{prefix}.chunks"', f'processor_group = "{prefix}-processors"',
             f'finalizer_group = "{prefix}-finalizer"',
             f'chunks = "{path.parent / "chunks"}"', f'datasets = "{path.parent / "datasets"}"']
    if conn.uses_sasl:
        lines += [f'sasl_mechanism = "{conn.sasl_mechanism}"',
                  f'sasl_username = "{conn.username}"']
    if conn.ssl_cafile is not None:
        lines.append(f'ssl_cafile = "{conn.ssl_cafile}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def environment(config: Path, password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYSTREAM_")}
    env[CONFIG_ENV] = str(config)
    if password is not None:
        env["PLAYSTREAM_SASL_PASSWORD"] = password
    return env


def run(env: dict[str, str], *args: str | Path, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def games_file(path: Path, seed: int, count: int) -> list[GameRecord]:
    records = list(generate_records(board_type="square8", num_players=2, agent="random",
                                    seed=seed, count=count, node="sec"))
    with JsonlWriter(path) as out:
        for record in records:
            out.write(record)
    return records


def sealed_games(store: ChunkStore) -> int:
    return sum(len(ChunkMetadata.read(path).games) for _, path in store.sealed(KEY))


def dataset_keys(datasets: Path) -> Counter[tuple[str, int]]:
    out: Counter[tuple[str, int]] = Counter()
    for path in sorted((datasets / KEY / "current").glob("*.npz")):
        rows = load_npz_dataset(path).rows
        out.update(zip(rows.game_id.tolist(), rows.move_number.tolist()))
    return out


def topic_game_ids(conn: KafkaConnection, topic: str) -> Counter[str]:
    consumer = KafkaConsumer(topic, **conn.kafka_python_kwargs(),
                             group_id=f"check-{uuid.uuid4().hex[:8]}",
                             auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             kafka_client=StopIOFirstClient)
    try:
        return Counter(decode_msgpack(m.value)["game_id"] for m in consumer)
    finally:
        consumer.close()


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *parts: str,
                          secret: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    assert secret not in proc.stderr + proc.stdout
    return lines[0]


@pytest.mark.parametrize("protocol, mechanism", [("SASL_PLAINTEXT", "SCRAM-SHA-512"),
                                                 ("SSL", None)])
def test_the_whole_pipeline_on_a_secured_listener(secure_kafka: LocalKafka, tmp_path: Path,
                                                  topic_prefix: str, protocol: str,
                                                  mechanism: str | None) -> None:
    """publish → stream → finalize, every client over the secured listener, every game
    exactly once in the dataset."""
    conn = secure_kafka.connection(protocol, mechanism)
    password = secure_kafka.sasl_password.get_secret_value() if conn.uses_sasl else None
    env = environment(config_file(tmp_path / "playstream.toml", conn, topic_prefix), password)
    records = games_file(tmp_path / "games.jsonl", seed=5, count=24)
    published = run(env, "publish", "--jsonl", tmp_path / "games.jsonl")
    assert published.returncode == 0, published.stderr
    assert "acknowledged=24" in published.stdout

    store = ChunkStore(tmp_path / "chunks")
    stream = subprocess.Popen([*CLI, "stream", "--chunk-age", "1s", "--chunk-rows", "5000"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 120
        while sealed_games(store) < len(records):
            assert stream.poll() is None, stream.communicate()
            assert time.monotonic() < deadline, f"sealed {sealed_games(store)} of 24"
            time.sleep(0.5)
    finally:
        stream.send_signal(signal.SIGTERM)
        out, err = stream.communicate(timeout=60)
    assert stream.returncode == 0, err
    assert "processed=24 invalid=0" in out

    finalized = run(env, "finalize", "--once")
    assert finalized.returncode == 0, finalized.stderr
    assert "datasets=1" in finalized.stdout
    expected = Counter((r.game_id, m) for r in records for m in range(len(r.moves)))
    assert dataset_keys(tmp_path / "datasets") == expected
    status = run(env, "status", "--json", "--max-lag", "0")  # status on the same listener
    assert status.returncode == 0, status.stderr
    partitions = json.loads(status.stdout)["partitions"]
    assert partitions and all(p["lag"] == 0 for p in partitions)
    assert sum(p["end_offset"] for p in partitions) == len(records)


REFUSALS = {
    "wrong password": dict(protocol="SASL_PLAINTEXT", mechanism="SCRAM-SHA-256",
                           password="not-the-password",
                           says="wrong user or password (user 'playstream')"),
    "untrusted certificate": dict(protocol="SSL", mechanism=None, password=None,
                                  says="certificate not trusted"),
}


@pytest.mark.parametrize("command", ["stream", "finalize", "publish", "replay", "status",
                                     "report"])
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refusal_is_one_clear_line_and_exit_1(secure_kafka: LocalKafka, foreign_ca: Path,
                                                tmp_path: Path, topic_prefix: str,
                                                command: str, case: str) -> None:
    spec = REFUSALS[case]
    protocol, mechanism = str(spec["protocol"]), spec["mechanism"]
    overrides = {"ssl_cafile": foreign_ca} if protocol == "SSL" else {}
    conn = secure_kafka.connection(protocol, mechanism, **overrides)
    env = environment(config_file(tmp_path / "playstream.toml", conn, topic_prefix),
                      spec["password"])
    games_file(tmp_path / "games.jsonl", seed=1, count=2)
    (tmp_path / "chunks").mkdir()
    if command == "report":  # a small dataset to report on, then the dead letters it asks for
        assert run(env, "export", "--jsonl", tmp_path / "games.jsonl", "--board-type",
                   "square8", "--num-players", "2", "--output", tmp_path / "d.npz",
                   "--no-progress").returncode == 0
    args = {"stream": ["stream"], "finalize": ["finalize", "--once"],
            "publish": ["publish", "--jsonl", tmp_path / "games.jsonl"],
            "replay": ["replay", "--output", tmp_path / "replay", "--no-progress"],
            "status": ["status"],
            "report": ["report", tmp_path / "d.npz", "--output", tmp_path / "r.html",
                       "--dlq-topic", f"{topic_prefix}.dlq", "--no-progress"]}[command]
    started = time.monotonic()
    proc = run(env, *args, timeout=120)
    elapsed = time.monotonic() - started
    note = f"({protocol}, {mechanism})" if mechanism else f"({protocol})"
    line = assert_one_error_line(proc, conn.bootstrap_servers[0], note, str(spec["says"]),
                                 secret=secure_kafka.sasl_password.get_secret_value())
    if command == "publish":  # stopped at the refusal: what it had read waits in the spool
        kept = Spool(tmp_path / "games.jsonl.spool", max_bytes=1 << 30)
        try:
            assert kept.pending_count >= 1
            assert f"{kept.pending_count} games stay in the spool" in line
        finally:
            kept.close()
    assert elapsed < FAST_S, f"{command} took {elapsed:.1f}s to report {case}"


def test_a_refused_worker_keeps_its_games_until_the_password_is_fixed(
        secure_kafka: LocalKafka, tmp_path: Path, topic_prefix: str) -> None:
    conn = secure_kafka.connection("SASL_PLAINTEXT", "SCRAM-SHA-256")
    config = config_file(tmp_path / "playstream.toml", conn, topic_prefix)
    right = secure_kafka.sasl_password.get_secret_value()
    spool = tmp_path / "spool"

    def selfplay(password: str, seed: int) -> subprocess.CompletedProcess[str]:
        return run(environment(config, password), "selfplay", "--bootstrap-server",
                   conn.bootstrap, "--board-type", "square8", "--num-players", "2",
                   "--games", "6", "--seed", seed, "--worker", "w", "--spool", spool,
                   "--no-progress")

    refused = selfplay("not-the-password", seed=1)
    line = assert_one_error_line(refused, conn.bootstrap, "(SASL_PLAINTEXT, SCRAM-SHA-256)",
                                 "wrong user or password", secret=right)
    kept = Spool(spool, max_bytes=1 << 30)
    try:
        spooled = [decode_msgpack(payload)["game_id"] for _, payload in kept.pending()]
    finally:
        kept.close()
    assert spooled, "the refused worker spooled nothing"
    assert f"{len(spooled)} games stay in the spool {spool}" in line
    assert f"left_in_spool={len(spooled)}" in refused.stdout
    first_run = [r.game_id for r in generate_records(board_type="square8", num_players=2,
                                                     agent="random", seed=1, count=6,
                                                     worker="w")]
    assert spooled == first_run[:len(spooled)]  # the games it played, in order

    fixed = selfplay(right, seed=2)
    assert fixed.returncode == 0, fixed.stderr
    second_run = [r.game_id for r in generate_records(board_type="square8", num_players=2,
                                                      agent="random", seed=2, count=6,
                                                      worker="w")]
    assert f"acknowledged={len(spooled) + 6}" in fixed.stdout
    assert topic_game_ids(conn, f"{topic_prefix}.games") == Counter(spooled + second_run)


def test_the_demo_hands_its_connection_to_every_process(secure_kafka: LocalKafka,
                                                        tmp_path: Path) -> None:
    """`demo --bootstrap-server` on the SCRAM listener: its workers, processor and finalizer
    get the security settings on their command line and the password in their environment
    (the caller's PLAYSTREAM_ variables are not passed on, the demo's own password is)."""
    conn = secure_kafka.connection("SASL_PLAINTEXT", "SCRAM-SHA-256")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYSTREAM_")}
    env["PLAYSTREAM_SASL_PASSWORD"] = secure_kafka.sasl_password.get_secret_value()
    proc = subprocess.run([*CLI, "demo", "--bootstrap-server", conn.bootstrap,
                           "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism",
                           "SCRAM-SHA-256", "--sasl-username", str(conn.username), "--dir",
                           tmp_path / "demo", "--games", "20", "--workers", "2", "--timeout",
                           "240"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    current = tmp_path / "demo" / "datasets" / KEY / "current"
    keys: Counter[tuple[str, int]] = Counter()
    for path in sorted(current.glob("*.npz")):
        rows = load_npz_dataset(path).rows
        keys.update(zip(rows.game_id.tolist(), rows.move_number.tolist()))
    assert keys and max(keys.values()) == 1
    assert len({game for game, _ in keys}) == 20
    logs = "".join(p.read_text() for p in (tmp_path / "demo" / "logs").glob("*.log"))
    assert env["PLAYSTREAM_SASL_PASSWORD"] not in logs
