"""Durability on POSIX file systems: the one fsync helper every writer shares."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or link in ``path`` durable: the directory entry is the directory's data,
    so a crash after ``os.replace`` can lose the new name unless the directory is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
