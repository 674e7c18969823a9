"""A set of 16-byte digests in bounded memory: deduplication by game id and by move sequence.

Compaction, the export summary and ``validate --db/--jsonl`` all need "was this game seen
before?" over every game of a dataset. A Python set of strings costs ~100 bytes a member;
this costs 16.
"""
from __future__ import annotations

import numpy as np

DIGEST_BYTES = 16
DIGEST_DTYPE = f"S{DIGEST_BYTES}"


class DigestSet:
    """Distinct 16-byte digests in sorted levels, each more than twice the size of the next
    (a log-structured merge): 16 bytes per member, O(log n) levels to search, and each digest
    is merged O(log n) times."""

    def __init__(self) -> None:
        self._levels: list[np.ndarray] = []

    def insert(self, keys: np.ndarray) -> np.ndarray:
        """Add ``keys`` (dtype S16); True where a key was absent before and is its first
        occurrence in ``keys``."""
        unique, first = np.unique(keys, return_index=True)
        absent = np.ones(unique.size, bool)
        for level in self._levels:
            pos = np.minimum(np.searchsorted(level, unique), level.size - 1)
            absent &= level[pos] != unique
        fresh = np.zeros(keys.size, bool)
        fresh[first[absent]] = True
        if absent.any():
            self._levels.append(unique[absent])
            while len(self._levels) > 1 and self._levels[-2].size <= 2 * self._levels[-1].size:
                top = self._levels.pop()
                self._levels[-1] = np.sort(np.concatenate([self._levels[-1], top]))
        return fresh

    def add(self, key: bytes) -> bool:
        """Add one digest; True if it was not in the set."""
        return bool(self.insert(np.array([key], dtype=DIGEST_DTYPE))[0])
