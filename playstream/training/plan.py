"""Which rows go into which batch of which shard, computed from row counts alone.

An epoch's rows are cut into ranges of at most ``range_rows`` consecutive rows of one file.
The ranges are permuted with the epoch's seed and dealt round-robin to the shards (one shard
per DataLoader worker of each rank), so every row belongs to exactly one shard whatever the
worker count. Within a shard, ranges enter a shuffle buffer of ``shuffle_buffer`` rows in
order, and full batches leave it at random (a reservoir, as tf.data and KataGo's loaders do).

The whole plan is index arithmetic on row numbers and never reads data, so a resumed loader
can skip the batches it already handed out by planning them again, and a worker loads a
range only when its first row is due (memory: the buffer plus the ranges it has started).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from playstream.errors import LoaderError


@dataclass(frozen=True)
class ShardRanges:
    """The ranges one shard reads, in reading order; rows are numbered shard-locally:
    range i holds rows ``base[i]`` .. ``base[i + 1] - 1``."""

    file: np.ndarray  # int64 [R], index into the snapshot's files
    start: np.ndarray  # int64 [R], first row in the file
    base: np.ndarray  # int64 [R + 1]

    @property
    def rows(self) -> int:
        return int(self.base[-1])

    def locate(self, ids: np.ndarray) -> np.ndarray:
        """The range of each shard-local row id."""
        return np.searchsorted(self.base, ids, side="right") - 1


def epoch_rng(seed: int, epoch: int, *stream: int) -> np.random.Generator:
    """Independent, reproducible streams per (seed, epoch, purpose, shard, ...)."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, *stream]))


def _epoch_ranges(file_rows: list[int], range_rows: int, *, seed: int, epoch: int,
                  shuffle: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(file, start, size) of every range of the epoch, in the epoch's order."""
    if range_rows < 1:
        raise LoaderError(f"range_rows must be at least 1, got {range_rows}")
    counts = np.asarray(file_rows, dtype=np.int64)
    per_file = -(-counts // range_rows)
    file = np.repeat(np.arange(counts.size, dtype=np.int64), per_file)
    first_of_file = np.cumsum(per_file) - per_file
    start = (np.arange(file.size, dtype=np.int64) - first_of_file[file]) * range_rows
    order = (epoch_rng(seed, epoch, 0).permutation(file.size) if shuffle
             else np.arange(file.size))
    file, start = file[order], start[order]
    return file, start, np.minimum(range_rows, counts[file] - start)


def shard_ranges(file_rows: list[int], range_rows: int, shard: int, num_shards: int, *,
                 seed: int, epoch: int, shuffle: bool) -> ShardRanges:
    """Shard ``shard`` of ``num_shards``: every ``num_shards``-th range of the epoch's order."""
    if not 0 <= shard < num_shards:
        raise LoaderError(f"shard {shard} is not in 0..{num_shards - 1}")
    file, start, sizes = _epoch_ranges(file_rows, range_rows, seed=seed, epoch=epoch,
                                       shuffle=shuffle)
    file, start, sizes = file[shard::num_shards], start[shard::num_shards], \
        sizes[shard::num_shards]
    base = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=base[1:])
    return ShardRanges(file=file, start=start, base=base)


def shard_quota(file_rows: list[int], range_rows: int, shard: int, workers: int,
                world_size: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool,
                even: bool, epoch_batches: int | None) -> int | None:
    """How many batches shard ``shard`` (worker ``shard % workers`` of rank
    ``shard // workers``) yields this epoch; None: all its plan holds.

    ``even``: as many as the poorest shard of every rank has full batches, so every rank
    runs the same number of steps (data-parallel training waits on every rank at every
    step); the rows past it are left out of this epoch only (another epoch deals the ranges
    differently). ``epoch_batches`` K: an epoch is at most K batches per rank, split
    between its workers, so that `set_epoch` (and in follow mode, a newer version) comes
    every K steps."""
    quota = None
    if even:
        _, _, sizes = _epoch_ranges(file_rows, range_rows, seed=seed, epoch=epoch,
                                    shuffle=shuffle)
        num_shards = workers * world_size
        rows = np.bincount(np.arange(sizes.size) % num_shards, weights=sizes,
                           minlength=num_shards)
        quota = int(rows.min()) // batch_size
    if epoch_batches is not None:
        worker = shard % workers
        mine = epoch_batches // workers + (1 if worker < epoch_batches % workers else 0)
        quota = mine if quota is None else min(quota, mine)
    return quota


def batch_plan(ranges: ShardRanges, batch_size: int, shuffle_buffer: int,
               rng: np.random.Generator | None, *, drop_last: bool = False
               ) -> Iterator[np.ndarray]:
    """Shard-local row ids of each batch, in order. ``rng`` None: no shuffling (the rows
    in reading order). Only the shard's last batch may be short (or dropped)."""
    if batch_size < 1 or shuffle_buffer < 0:
        raise LoaderError(f"batch_size must be >= 1 and shuffle_buffer >= 0, got "
                          f"{batch_size} and {shuffle_buffer}")
    pool = np.zeros(0, dtype=np.int64)
    for i in range(len(ranges.file)):
        pool = np.concatenate([pool, np.arange(ranges.base[i], ranges.base[i + 1])])
        ready = (pool.size - shuffle_buffer) // batch_size
        if ready <= 0:
            continue
        if rng is not None:
            pool = rng.permutation(pool)
        for b in range(ready):
            yield pool[b * batch_size:(b + 1) * batch_size]
        pool = pool[ready * batch_size:]
    if rng is not None:
        pool = rng.permutation(pool)
    full = pool.size // batch_size
    for b in range(full):
        yield pool[b * batch_size:(b + 1) * batch_size]
    if pool.size % batch_size and not drop_last:
        yield pool[full * batch_size:]
