"""The training stream: batches of one epoch for one shard, and the state that resumes it.

One `TrainingStream` object lives in the trainer's main process; DataLoader workers (or the
main process itself) run `iterate(shard, num_shards)` on their copy. What every copy must
agree on for an epoch (its number, the snapshot it reads, the batches already trained when
resuming) is decided in the main process by `set_epoch` / `load_state_dict` and kept in a
small shared-memory block, so persistent workers see it too and no two workers can pick
different dataset versions. The main process learns what was trained from the batches
themselves: each carries ``cursor`` = (epoch, shard, index in shard, shards), which `record` (or the
`track` wrapper) notes; `state_dict` is therefore what the trainer consumed, not what the
workers prefetched, and resuming re-plans the epoch and skips exactly those batches.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from playstream.dataset import RowBatch, RowRange, RowReader, open_rows
from playstream.errors import DatasetError, LoaderError
from playstream.games import get_game
from playstream.games.symmetry import Symmetries
from playstream.training.collate import (Allocate, allocate_arrays, augment_sparse_policy,
                                         batch_specs, gather)
from playstream.training.plan import batch_plan, epoch_rng, shard_quota, shard_ranges
from playstream.training.cache import DatasetCache
from playstream.training.sources import (ShardFile, Snapshot, check_file, is_followable,
                                         resolve)

log = logging.getLogger(__name__)

STATE_VERSION = 1
CONTROL_BYTES = 4 << 20  # the shared epoch plan: a snapshot of MAX_FILES files fits
OPEN_FILES = 64  # row readers kept open per process (each maps one file)
Batch = dict[str, np.ndarray]
BATCH_ROWS = ("features", "globals", "values", "values_mp")  # per-row arrays of every batch
ID_ROWS = ("game_id", "move_number")  # and with_ids


@dataclass(frozen=True)
class StreamOptions:
    """How batches are cut. ``range_rows`` is the unit rows are dealt to workers in (and
    read in); ``shuffle_buffer`` rows are held to mix ranges; ``reuse_limit`` R lets a
    rank hand out at most R rows per row self-play produced (manifest chunk rows), waiting
    for new versions beyond that; ``poll_seconds`` is how often it then looks. ``s3://``
    sources are read from local copies in ``cache_dir`` (default
    ``~/.cache/playstream/datasets``), of which files the current snapshot does not use are
    evicted beyond ``cache_bytes`` (None: never). ``even_batches`` gives every rank the
    same number of steps per epoch and ``epoch_batches`` K ends an epoch after K batches per
    rank (see `shard_quota`)."""

    batch_size: int
    seed: int = 0
    shuffle: bool = True
    shuffle_buffer: int = 8192
    range_rows: int = 1024
    augment: bool = False
    dense_policy: bool = True
    with_ids: bool = False
    drop_last: bool = False
    even_batches: bool = False
    epoch_batches: int | None = None
    split: str = "train"
    follow: bool = False
    reuse_limit: float | None = None
    poll_seconds: float = 1.0
    verify: bool = True
    cache_dir: str | None = None
    cache_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.range_rows < 1 or self.shuffle_buffer < 0:
            raise LoaderError("batch_size and range_rows must be >= 1, shuffle_buffer >= 0",
                              batch_size=self.batch_size, range_rows=self.range_rows,
                              shuffle_buffer=self.shuffle_buffer)
        if self.epoch_batches is not None and self.epoch_batches < 1:
            raise LoaderError("epoch_batches must be at least 1",
                              epoch_batches=self.epoch_batches)
        if self.reuse_limit is not None and not (self.follow and self.reuse_limit > 0):
            raise LoaderError("reuse_limit needs follow=True (rows produced are counted from "
                              "the manifests) and a positive value",
                              reuse_limit=self.reuse_limit)


class _Control:
    """The epoch plan shared by the main process and its workers (fork or spawn): a JSON
    document in shared memory, plus the rows this rank handed out (for the reuse limit)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context()
        self._plan = ctx.Array("c", CONTROL_BYTES)
        self.handed_out = ctx.Value("q", 0)
        self.produced = ctx.Value("q", 0)

    def write(self, plan: dict[str, Any]) -> None:
        data = json.dumps(plan).encode()
        if len(data) >= CONTROL_BYTES:
            raise LoaderError(f"the epoch plan is {len(data)} bytes, more than "
                              f"{CONTROL_BYTES}")
        with self._plan.get_lock():
            self._plan.raw = data + b"\0"  # type: ignore[attr-defined]

    def read(self) -> dict[str, Any]:
        with self._plan.get_lock():
            data = self._plan.value  # type: ignore[attr-defined]
        return json.loads(data)


class _Readers:
    """Open files of this process, the least recently used closed beyond OPEN_FILES. A file
    is verified (manifest sha256, or its array checksums) the first time it is opened; an
    object-store file is opened from its cached copy, which is fetched (and verified on the
    way in) if absent, and fetched again if an older copy fails its check."""

    def __init__(self, verify: bool, cache: DatasetCache) -> None:
        self.verify = verify
        self.cache = cache
        self._open: OrderedDict[str, RowReader] = OrderedDict()
        self._checked: set[str] = set()

    def _local(self, shard: ShardFile, check: bool) -> str:
        """The local file to map for ``shard``, its sha256 checked if ``check``."""
        if not shard.remote:
            if check:
                check_file(shard)
            return shard.path
        assert shard.sha256 is not None  # sources.py refuses object files without one
        path, fresh = self.cache.fetch(shard.path, shard.sha256)
        if check and not fresh:
            try:
                check_file(ShardFile(str(path), shard.rows, shard.sha256))
            except DatasetError:
                log.warning("cached dataset file is damaged: fetching it again",
                            extra={"path": shard.path, "cache": str(path)})
                self.cache.evict(shard.sha256)
                path, _ = self.cache.fetch(shard.path, shard.sha256)
        return str(path)

    def get(self, snapshot: Snapshot, index: int) -> RowReader:
        shard = snapshot.files[index]
        reader = self._open.pop(shard.path, None)
        if reader is None:
            first = shard.path not in self._checked
            local = self._local(shard, first and self.verify)
            reader = open_rows(local, verify=first and self.verify and shard.sha256 is None)
            self._checked.add(shard.path)
            if reader.config != snapshot.config or reader.rows != shard.rows:
                reader.close()
                raise LoaderError("the file changed since the snapshot was taken",
                                  path=shard.path)
        self._open[shard.path] = reader
        while len(self._open) > OPEN_FILES:
            self._open.popitem(last=False)[1].close()
        return reader


class TrainingStream:
    """Batches of numpy arrays from a dataset source (file, folder of shards, version
    folder, or a finalizer output folder to follow); see `StreamOptions` for the knobs.

    ``rank``/``world_size`` split the rows between data-parallel processes, and
    `iterate` between the workers of one process. ``agree`` lets ranks agree on the
    snapshot of an epoch (the torch layer broadcasts rank 0's): it maps the snapshot document
    this rank resolved to the one every rank uses. It must be picklable (a module-level
    function) for spawned workers.
    """

    def __init__(self, source: str | Path, options: StreamOptions, *, rank: int = 0,
                 world_size: int = 1,
                 agree: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        if not 0 <= rank < world_size:
            raise LoaderError(f"rank {rank} is not in 0..{world_size - 1}")
        self.source = str(source)
        self.options = options
        self.rank, self.world_size = rank, world_size
        if options.follow and not is_followable(self.source):
            raise LoaderError("follow=True needs a finalizer output folder (with a 'current' "
                              "link)", path=self.source)
        self._agree = agree
        self._cache = DatasetCache(options.cache_dir, max_bytes=options.cache_bytes)
        self._control = _Control()
        self._consumed: dict[int, int] = {}
        self._num_shards: int | None = None
        self._epoch = 0
        self._plan: dict[str, Any] = {}
        self._readers: _Readers | None = None
        self.set_epoch(0)

    # -- main process ----------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        return Snapshot.from_json(self._plan["snapshot"])

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` at the next iteration: its own shuffle and augmentation,
        and in follow mode the newest published version. Call it before iterating, as with
        DistributedSampler; persistent workers pick it up too."""
        if self.options.follow or not self._plan:
            snapshot = self._resolve()
            if self._agree is not None:
                snapshot = Snapshot.from_json(self._agree(snapshot.to_json()))
        else:
            snapshot = self.snapshot
        self._write_plan(epoch, snapshot, resume=None)

    def _resolve(self) -> Snapshot:
        return resolve(self.source, self.options.split)

    def _write_plan(self, epoch: int, snapshot: Snapshot,
                    resume: dict[str, Any] | None) -> None:
        plan = {"epoch": epoch, "snapshot": snapshot.to_json(), "resume": resume}
        self._epoch = int(plan["epoch"])
        self._plan = plan
        resume = plan["resume"] or {}
        self._consumed = {int(k): v for k, v in resume.get("consumed", {}).items()}
        self._num_shards = resume.get("num_shards")
        produced = Snapshot.from_json(plan["snapshot"]).produced_rows or 0
        with self._control.produced.get_lock():
            self._control.produced.value = max(self._control.produced.value, produced)
        self._control.write(plan)
        self._cache.prune({f.sha256 for f in snapshot.files if f.remote and f.sha256})
        if snapshot.version:
            log.info("training from dataset version", extra={
                "path": self.source, "version": snapshot.version, "rows": snapshot.rows,
                "epoch": epoch})

    def record(self, batch: dict[str, Any]) -> None:
        """Note that ``batch`` was trained on (what `state_dict` then remembers)."""
        epoch, shard, index, num_shards = (int(v) for v in batch["cursor"])
        if epoch != self._epoch or self._num_shards not in (None, num_shards):
            raise LoaderError(f"a batch of epoch {epoch} with {num_shards} shards, while "
                              f"epoch {self._epoch} is set with {self._num_shards}")
        self._num_shards = num_shards
        self._consumed[shard] = max(self._consumed.get(shard, 0), index + 1)

    def track(self, batches: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """``batches`` (a DataLoader over this stream, or the stream), each recorded as it is
        handed to the training step."""
        for batch in batches:
            self.record(batch)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where training stands: the epoch, the snapshot it reads and, per shard, how many
        batches were trained. JSON-serialisable."""
        return {"version": STATE_VERSION, "options": asdict(self.options),
                "rank": self.rank, "world_size": self.world_size, "epoch": self._epoch,
                "snapshot": self._plan["snapshot"],
                "consumed": {str(k): v for k, v in sorted(self._consumed.items())},
                "num_shards": self._num_shards}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration continues the saved epoch with the saved snapshot,
        skipping the batches already trained. Call it before the first iteration."""
        if state.get("version") != STATE_VERSION:
            raise LoaderError(f"loader state version {state.get('version')!r} is not "
                              f"{STATE_VERSION}")
        mine = asdict(self.options)
        changed = [k for k in ("batch_size", "seed", "shuffle", "shuffle_buffer", "range_rows",
                               "drop_last", "even_batches", "epoch_batches", "split")
                   if state["options"].get(k) != mine[k]]
        if changed or state["world_size"] != self.world_size or state["rank"] != self.rank:
            raise LoaderError("the saved loader state was made with other options "
                              f"({', '.join(changed) or 'rank/world_size'}): the epoch plan "
                              "would differ, so resuming could repeat or skip rows")
        snapshot = Snapshot.from_json(state["snapshot"])
        missing = [f.path for f in snapshot.files if not self._available(f)]
        if missing:
            raise LoaderError("the dataset version the saved state was reading is gone "
                              "(pruned?): keep more versions to resume mid-epoch",
                              path=missing[0], version=snapshot.version)
        self._write_plan(int(state["epoch"]), snapshot, resume={
            "consumed": state["consumed"], "num_shards": state["num_shards"]})
        # Rows handed out before the save count against the reuse limit again.
        trained = sum(state["consumed"].values()) * self.options.batch_size
        with self._control.handed_out.get_lock():
            self._control.handed_out.value = trained

    def _available(self, shard: ShardFile) -> bool:
        """The file can still be read: on disk, in the store, or (object files) cached."""
        return (shard.remote and shard.sha256 is not None
                and self._cache.entry(shard.sha256).is_file()) or shard.exists()

    def __getstate__(self) -> dict[str, Any]:
        """What a spawned worker gets: open files stay with the process that opened them."""
        state = dict(self.__dict__)
        state["_readers"] = None
        return state

    # -- any process -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Batch]:
        """The whole rank's share in this process (no worker split)."""
        return self.iterate(0, 1)

    def iterate(self, worker: int, num_workers: int, allocate: Allocate = allocate_arrays
                ) -> Iterator[Batch]:
        """The batches of worker ``worker`` of ``num_workers`` of this rank, for the epoch
        the main process set. The numeric arrays of each batch come from ``allocate`` (the
        torch layer passes one shared-memory block per batch in DataLoader workers)."""
        plan = self._control.read()
        num_shards = self.world_size * num_workers
        shard = self.rank * num_workers + worker
        resume = plan["resume"]
        skip = 0
        if resume is not None:
            if resume["num_shards"] is not None and resume["num_shards"] != num_shards:
                raise LoaderError(
                    f"the saved state was made with {resume['num_shards']} shards (ranks x "
                    f"workers) and this run has {num_shards}: use the same num_workers to "
                    f"resume mid-epoch")
            skip = int(resume["consumed"].get(str(shard), 0))
        return self._batches(plan, shard, num_shards, skip, allocate)

    def _batches(self, plan: dict[str, Any], shard: int, num_shards: int,
                 skip: int, allocate: Allocate) -> Iterator[Batch]:
        options = self.options
        epoch = int(plan["epoch"])
        snapshot = Snapshot.from_json(plan["snapshot"])
        if self._readers is None:
            self._readers = _Readers(options.verify, self._cache)
        file_rows = [f.rows for f in snapshot.files]
        ranges = shard_ranges(file_rows, options.range_rows, shard, num_shards,
                              seed=options.seed, epoch=epoch, shuffle=options.shuffle)
        quota = shard_quota(file_rows, options.range_rows, shard, num_shards // self.world_size,
                            self.world_size, options.batch_size, seed=options.seed,
                            epoch=epoch, shuffle=options.shuffle, even=options.even_batches,
                            epoch_batches=options.epoch_batches)
        shuffle = epoch_rng(options.seed, epoch, 1, shard) if options.shuffle else None
        symmetries = self._symmetries(snapshot) if options.augment else None
        loaded: dict[int, RowRange] = {}
        handed_over = BATCH_ROWS + (ID_ROWS if options.with_ids else ())
        left = np.diff(ranges.base)  # rows of each range not yet in a batch
        for index, ids in enumerate(batch_plan(ranges, options.batch_size,
                                               options.shuffle_buffer, shuffle,
                                               drop_last=options.drop_last)):
            if quota is not None and index >= quota:
                return
            where = ranges.locate(ids)
            used = np.unique(where)
            if index < skip:  # trained before the save: planned again, never read
                left[used] -= np.bincount(where, minlength=left.size)[used]
                continue
            self._wait_for_budget(ids.size)
            parts = []
            for r in used.tolist():
                if r not in loaded:
                    reader = self._readers.get(snapshot, int(ranges.file[r]))
                    start = int(ranges.start[r])
                    loaded[r] = reader.read_range(start, start + int(ranges.base[r + 1]
                                                                     - ranges.base[r]))
                mine = ids[where == r] - ranges.base[r]
                parts.append((loaded[r], mine))
            chosen = None
            if symmetries is not None and symmetries.size > 1:
                draw = epoch_rng(options.seed, epoch, 2, shard, index)  # same on resume
                chosen = draw.integers(symmetries.size, size=ids.size)
            extra = {"cursor": ((4,), np.dtype(np.int64))}
            if options.dense_policy:
                extra["policy"] = ((ids.size, snapshot.config.policy_size),
                                   np.dtype(np.float32))
            out = allocate(batch_specs(parts, ids.size, handed_over, extra))
            rows, transforms = gather(parts, chosen, symmetries, out)
            for r, (_, mine) in zip(used.tolist(), parts):
                left[r] -= mine.size
                if left[r] == 0:
                    del loaded[r]
            out["cursor"][:] = (epoch, shard, index, num_shards)
            yield self._collate(rows, snapshot, symmetries, transforms, out)

    def _symmetries(self, snapshot: Snapshot) -> Symmetries:
        config = snapshot.config
        return get_game(config.game).symmetries(config.board_type)

    def _collate(self, rows: RowBatch, snapshot: Snapshot, symmetries: Symmetries | None,
                 transforms: np.ndarray | None, out: dict[str, np.ndarray]) -> Batch:
        """The batch dict; the planes are already transformed (`gather`), the policy target
        is moved here with the same transform of each row, into its buffer in ``out``."""
        indices, values = rows.policy_indices, rows.policy_values
        batch: Batch = {name: getattr(rows, name) for name in BATCH_ROWS}
        batch["cursor"] = out["cursor"]
        if self.options.dense_policy:
            batch["policy"] = rows.dense_policy(
                snapshot.config.policy_size, out=out["policy"],
                moved=None if symmetries is None else symmetries.moved_actions,
                transforms=transforms)
        else:
            if transforms is not None:
                assert symmetries is not None
                indices, values = augment_sparse_policy(rows.policy_indptr, indices, values,
                                                        symmetries, transforms)
            batch.update(policy_indptr=rows.policy_indptr, policy_indices=indices,
                         policy_values=values)
        if self.options.with_ids:
            batch.update({name: getattr(rows, name) for name in ID_ROWS})
        return batch

    def _wait_for_budget(self, rows: int) -> None:
        """Block while handing out ``rows`` more would pass reuse_limit x rows produced (this
        rank's share), looking for newly published versions every poll_seconds."""
        limit = self.options.reuse_limit
        if limit is None:
            return
        control = self._control
        waited_since = None
        while True:
            with control.handed_out.get_lock():
                budget = limit * control.produced.value / self.world_size
                if control.handed_out.value + rows <= budget:
                    control.handed_out.value += rows
                    break
                handed = control.handed_out.value
            if waited_since is None:
                waited_since = time.monotonic()
                log.warning("reuse limit reached: waiting for self-play to publish new rows",
                            extra={"path": self.source, "handed_out": handed,
                                   "produced": control.produced.value, "reuse_limit": limit})
            time.sleep(self.options.poll_seconds)
            produced = self._resolve().produced_rows or 0
            with control.produced.get_lock():
                control.produced.value = max(control.produced.value, produced)
        if waited_since is not None:
            log.warning("reuse limit released", extra={
                "path": self.source, "waited_s": round(time.monotonic() - waited_since, 3),
                "produced": control.produced.value})


def iter_batches(source: str | Path, *, batch_size: int, epochs: int = 1,
                 rank: int = 0, world_size: int = 1, **options: Any) -> Iterator[Batch]:
    """Numpy batches without torch (JAX, numpy trainers): ``epochs`` epochs of this rank's
    rows in one process, epoch e shuffled with (seed, e)."""
    stream = TrainingStream(source, StreamOptions(batch_size=batch_size, **options),
                            rank=rank, world_size=world_size)
    for epoch in range(epochs):
        stream.set_epoch(epoch)
        yield from stream
