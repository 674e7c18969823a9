"""The cover of a stream's chunks: which sealed chunks a dataset reads, so that every stream
position is counted once even when two owners sealed overlapping ranges.

On a local store the ``flock`` of a stream and the writer's overlap check keep a stream's
chunks disjoint. On an object store there is no lock: a processor that lost its partitions
(a paused VM, a network partition) but has not noticed yet may seal a range that overlaps what
the new owner sealed, if both seals fall between each other's listings. Every owner resumes
at one past a sealed range, so chunks start at the stream's first position or right after
another chunk. The cover follows those links: from the lowest first position, the chain of
contiguous chunks (each starting at one past the previous one's last) that reaches furthest,
then, past a gap (retention), the next such chain. The chunks in a cover never overlap, so no
position is read twice; a chunk left out is named "superseded" in the manifest.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from playstream.chunks import ChunkName


def chunk_cover(names: Iterable[ChunkName]) -> tuple[list[ChunkName], list[ChunkName]]:
    """(cover, superseded) of chunks of any streams, each in (stream, first) order. The
    choice is a function of the set of names only, so every finalizer makes the same one."""
    by_stream: dict[str, list[ChunkName]] = {}
    for n in sorted(set(names)):
        by_stream.setdefault(n.stream, []).append(n)
    cover: list[ChunkName] = []
    for chunks in by_stream.values():
        cover += _stream_cover(chunks)
    chosen = set(cover)
    superseded = [n for s in by_stream.values() for n in s if n not in chosen]
    return sorted(cover), superseded


def _stream_cover(chunks: list[ChunkName]) -> list[ChunkName]:
    starting: dict[int, list[ChunkName]] = {}
    for n in chunks:
        starting.setdefault(n.first, []).append(n)

    @lru_cache(maxsize=None)
    def reach(n: ChunkName) -> tuple[int, int]:
        """(furthest last position, -chunks) of the best chain that starts with ``n``."""
        best = (n.last, -1)
        for nxt in starting.get(n.last + 1, ()):
            far, count = reach(nxt)
            best = max(best, (far, count - 1))
        return best

    # deepest links first, so the recursion stays shallow whatever the chain's length
    for n in sorted(chunks, key=lambda c: c.first, reverse=True):
        reach(n)
    cover: list[ChunkName] = []
    end = -1
    while True:
        later = [f for f in starting if f > end]
        if not later:
            return cover
        # ties: the chain of fewer chunks, then the shorter first chunk (smaller name)
        step = min(starting[min(later)], key=lambda c: (tuple(-v for v in reach(c)), c))
        while True:
            cover.append(step)
            end = step.last
            nexts = starting.get(end + 1)
            if not nexts:
                break
            step = min(nexts, key=lambda c: (tuple(-v for v in reach(c)), c))
