"""A local S3Proxy driven through ``deploy/s3/s3.sh``, for the tests, the demo and benchmarks:
Maven Central jar, filesystem backend, bound to 127.0.0.1 only, a ``playstream`` bucket."""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from playstream.errors import StorageError

DEFAULT_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "s3" / "s3.sh"
BUCKET = "playstream"


def s3_script() -> Path:
    script = Path(os.environ.get("PLAYSTREAM_S3_SCRIPT", DEFAULT_SCRIPT))
    if not script.is_file():
        raise StorageError("deploy/s3/s3.sh not found: run from a source checkout or set "
                           "PLAYSTREAM_S3_SCRIPT", url=str(script), operation="start")
    return script


class LocalS3:
    """One S3Proxy whose config, objects and log live in ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.endpoint: str | None = None

    def _run(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(["bash", str(s3_script()), *args], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise StorageError(f"s3.sh {args[0]} failed: {proc.stderr.strip()[-2000:]}",
                               url=str(self.directory), operation=args[0])
        return proc.stdout.strip()

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.endpoint = self._run("start", "--dir", str(self.directory)).splitlines()[-1]
        return self.endpoint

    def restart(self, *, kill: bool = False) -> str:
        args = ["restart", "--dir", str(self.directory)] + (["--kill"] if kill else [])
        self.endpoint = self._run(*args).splitlines()[-1]
        return self.endpoint

    def stop(self, *, kill: bool = False) -> None:
        self._run("stop", "--dir", str(self.directory), *(["--kill"] if kill else []),
                  timeout=120)

    def env(self) -> dict[str, str]:
        """The AWS_* variables that reach this server (what ``s3.sh env`` prints)."""
        words = shlex.split(self._run("env", "--dir", str(self.directory)))
        if not words or words[0] != "export":
            raise StorageError("unexpected output of s3.sh env", url=str(self.directory),
                               operation="env")
        return dict(w.split("=", 1) for w in words[1:])

    def __enter__(self) -> "LocalS3":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
