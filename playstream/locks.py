"""The one inter-process lock of the project: an exclusive ``flock`` on a file that holds the
owner's pid. The kernel releases it when the owner dies, even by SIGKILL, so a crashed writer
never blocks its successor; the pid is there for the error message of whoever waits."""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

POLL_S = 0.05


class ProcessLock:
    """Held from `acquire` until `release` (or the end of the ``with`` block)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: str | Path, *, timeout: float = 0.0) -> ProcessLock | None:
        """The lock, or None if another process still holds it after ``timeout`` seconds."""
        path = Path(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        # A lock dropped without release goes with its object, as it goes with its process.
        self.release()

    def __enter__(self) -> ProcessLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def holder_of(path: str | Path) -> str:
    """The pid written by the lock's holder, for messages ("unknown" if unreadable)."""
    try:
        return Path(path).read_text()[:32].strip() or "unknown"
    except OSError:
        return "unknown"
