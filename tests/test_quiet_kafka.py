"""Quiet by default means quiet: an unreachable broker is one line naming it, and a finalizer
stopped with SIGTERM logs no error (the kafka-python close race is fixed, not hidden)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from playstream.gamefiles import JsonlWriter
from playstream.producers.kafkaclient import StopIOFirstClient
from playstream.selfplay import generate_records

CLI = [sys.executable, "-m", "playstream.cli"]
UNREACHABLE = "127.0.0.1:1"
# kafka-python says only "Unable to bootstrap"; the probe of playstream.clients.kafka says why.
ERROR_LINE = f"error: cannot connect to {UNREACHABLE} (PLAINTEXT): connection refused"


@pytest.fixture
def games(tmp_path: Path) -> Path:
    path = tmp_path / "g.jsonl"
    with JsonlWriter(path) as out:
        for record in generate_records(board_type="square8", num_players=2, agent="random",
                                       seed=3, count=2):
            out.write(record)
    return path


def test_stream_and_finalize_say_one_line_naming_the_broker(tmp_path: Path) -> None:
    for args in (["stream", "--bootstrap", UNREACHABLE, "--chunks", tmp_path / "c"],
                 ["finalize", "--bootstrap", UNREACHABLE, "--chunks", tmp_path / "c",
                  "--output", tmp_path / "o", "--once"]):
        proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.splitlines() == [ERROR_LINE], (args[0], proc.stderr)


def test_publish_warns_once_then_says_what_stays_in_the_spool(games: Path) -> None:
    proc = subprocess.run([*CLI, "publish", "--jsonl", str(games), "--bootstrap", UNREACHABLE,
                           "--timeout", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    # one warning for the first failed connection (the retries repeat it at info level) and
    # the error; no kafka-python lines, no type said twice
    assert len(lines) == 2, proc.stderr
    assert '"logger": "playstream.producers", "msg": "cannot connect to Kafka"' in lines[0]
    assert lines[1].startswith("error: ") and "did not acknowledge 2 games within 3s" in lines[1]
    assert f"cannot connect to {UNREACHABLE} (PLAINTEXT): connection refused" in lines[1]
    assert "KafkaTimeoutError: KafkaTimeoutError" not in proc.stderr
    assert '"logger": "kafka' not in proc.stderr


def test_log_level_info_shows_the_kafka_clients_again(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "--log-level", "info", "finalize", "--bootstrap", UNREACHABLE,
                           "--chunks", str(tmp_path / "c"), "--output", str(tmp_path / "o"),
                           "--once"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert '"logger": "kafka.net.manager"' in proc.stderr
    assert proc.stderr.splitlines()[-1] == ERROR_LINE


@pytest.mark.kafka
def test_consumer_close_stops_the_io_thread_before_closing_connections(
        kafka_bootstrap: str) -> None:
    """The cause of the shutdown traceback: kafka-python closes the sockets from the caller's
    thread while its IO thread may still be reading one. With StopIOFirstClient no IO thread
    is running when the connections close."""
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, kafka_client=StopIOFirstClient,
                             group_id=f"quiet-{uuid.uuid4().hex[:8]}")
    client = consumer._client
    io_thread = client._net._io_thread
    assert io_thread is not None and io_thread.is_alive()
    seen: list[bool] = []
    close_connections = client._manager.close

    def recording_close(*args: object, **kwargs: object) -> None:
        seen.append(io_thread.is_alive())
        close_connections(*args, **kwargs)

    client._manager.close = recording_close
    consumer.close(autocommit=False)
    assert seen == [False]


@pytest.mark.kafka
def test_finalize_stopped_by_sigterm_logs_no_error(kafka_bootstrap: str, tmp_path: Path,
                                                   topic_prefix: str) -> None:
    # --log-level info lets kafka-python's own error lines through, so the test sees the race
    # if it happens, instead of the default level hiding it.
    log = tmp_path / "finalize.err"
    with log.open("w") as err_file:
        proc = subprocess.Popen(
            [*CLI, "--log-level", "info", "finalize", "--bootstrap", kafka_bootstrap,
             "--chunks", str(tmp_path / "c"), "--output", str(tmp_path / "o"),
             "--chunks-topic", f"{topic_prefix}.chunks", "--group", f"{topic_prefix}-fin",
             "--every", "1s"], stdout=subprocess.DEVNULL, stderr=err_file)
        try:
            deadline = time.monotonic() + 60
            while "Setting newly assigned partitions" not in log.read_text():  # in the group
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            time.sleep(2)  # fetching
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = log.read_text()
    assert proc.returncode == 0, err
    assert "Leaving consumer group" in err  # it did shut down through close()
    assert '"level": "error"' not in err and "Traceback" not in err, err
