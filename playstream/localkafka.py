"""A local single-node Kafka broker driven through ``deploy/kafka/kafka.sh``.

Used by the test session, the demo and the benchmarks, so all three run the broker the same
way: Maven Central jars, KRaft, bound to 127.0.0.1 only, stopped by its own pid.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from playstream.errors import PlaystreamError

DEFAULT_SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "kafka.sh"


def kafka_script() -> Path:
    script = Path(os.environ.get("PLAYSTREAM_KAFKA_SCRIPT", DEFAULT_SCRIPT))
    if not script.is_file():
        raise PlaystreamError("deploy/kafka/kafka.sh not found: run from a source checkout or "
                              "set PLAYSTREAM_KAFKA_SCRIPT", path=str(script))
    return script


class LocalKafka:
    """One broker whose config, data and log live in ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.bootstrap: str | None = None

    def _run(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(["bash", str(kafka_script()), *args], capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise PlaystreamError(f"kafka.sh {args[0]} failed: {proc.stderr.strip()[-2000:]}",
                                  path=str(self.directory))
        return proc.stdout.strip()

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.bootstrap = self._run("start", "--dir", str(self.directory)).splitlines()[-1]
        return self.bootstrap

    def restart(self) -> str:
        self.bootstrap = self._run("restart", "--dir", str(self.directory)).splitlines()[-1]
        return self.bootstrap

    def stop(self) -> None:
        self._run("stop", "--dir", str(self.directory), timeout=120)

    def __enter__(self) -> "LocalKafka":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
