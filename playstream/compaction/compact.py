"""compact(): the sealed chunks of one configuration become one published training dataset.

Memory does not grow with the dataset. The passes are:

1. verify every chunk (checksums and content, in blocks) and quarantine the bad ones;
2. a pre-pass over the small columns (game_id, move_number) of each chunk, oldest first, that
   picks the usable rows (dedup, sampling, short games) and spills the choice to a file in the
   work folder;
3. the window: the newest W(N) usable rows, from per-chunk counts only;
4. a planning pass over the small columns of the chunks in the window: the train/val side of
   every row and the exact row and game counts, so the manifest is known before writing;
5. the write: rows stream chunk by chunk into the outputs, or, with ``shuffle``, go through a
   two-phase external shuffle (KataGo's shuffle.py): a scatter into bucket files on disk,
   then each bucket is loaded alone, permuted and written.

Rows move with their planes packed (`PackedRows`) under one storage merged from the chunks'
(`Planes.merge`), so a format 3 chunk stored that way goes to the outputs without being
unpacked to dense float32 (27 times its bytes on a 19x19 board) and packed again; only a dense
chunk, one stored otherwise, or a dense output converts, block by block.

Each pass holds one chunk's small columns, or a few row blocks sized from
``memory_budget_bytes``. The one thing that grows with the data is the dedup set: 16 bytes per
distinct game (a sorted digest array; twice that for a moment while two levels merge). The
dataset writer adds its own distinct-game counter of 8 bytes per game of the file it writes.
Chunks themselves are bounded by the chunk writer's ``max_rows``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from playstream.chunks import ChunkMetadata, ChunkName, ChunkOrigin, ChunkStore
from playstream.chunks.writer import file_sha256
from playstream.compaction.cover import chunk_cover
from playstream.compaction.publish import (SPLITS, ChunkEntry, ObjectPublication, OutputEntry,
                                          Publication, QuarantinedChunk, build_manifest,
                                          is_object_url, is_single_file, open_publication)
from playstream.compaction.windows import AllRows, WindowPolicy
from playstream.dataset import (DatasetConfig, NPZDatasetWriter, RowBatch, read_metadata,
                                validate_npz_dataset)
from playstream.dataset.checks import row_shape
from playstream.dataset.layout import open_layout
from playstream.dataset.packing import PackedRows, Planes, packed_width
from playstream.dataset.reader import iter_packed_row_batches, read_planes
from playstream.dataset.schema import (BATCH_ARRAYS, DENSE_FORMAT_VERSIONS, FEATURE_CONSTANT,
                                       FIXED_DTYPES, FORMAT_VERSION, WRITABLE_VERSIONS,
                                       game_id_dtype)
from playstream.digests import DIGEST_BYTES, DIGEST_DTYPE, DigestSet
from playstream.errors import (ChunkError, ConfigMismatchError, DatasetError,
                               EmptyResultError, PlaystreamError)

log = logging.getLogger(__name__)

MIN_MEMORY_BUDGET = 1 << 20
# Row blocks read or written at once, and shuffle buckets, as fractions of the budget: a block
# is held about three times over (read, selected, split), a bucket twice (loaded, permuted).
BLOCK_FRACTION = 8
BUCKET_FRACTION = 8
# Per-row codes in the selection files of the work folder.
UNUSED, TRAIN, VAL = 0, 1, 2
_CODES = {"train": TRAIN, "val": VAL}
Progress = Callable[[int], None]


@dataclass(frozen=True)
class CompactOptions:
    """``window`` keeps the newest rows after dedup and sampling; ``val_fraction`` of the
    games (by a hash of game_id) go to val; ``sample_every`` keeps move_number % k == 0;
    ``min_moves`` drops games with fewer rows in their chunk. Games with one move sequence
    under different ids (same game, board and players) are always counted; with
    ``drop_duplicate_moves`` only the oldest is kept."""

    window: WindowPolicy = AllRows()
    dedup: bool = True
    drop_duplicate_moves: bool = False
    shuffle: bool = False
    seed: int = 0
    val_fraction: float = 0.0
    shard_rows: int | None = None
    sample_every: int = 1
    min_moves: int = 0
    dense_policy: bool = False
    compress: bool = False
    format_version: int = FORMAT_VERSION  # 1: dense float32 features (--features dense)
    memory_budget_bytes: int = 256 << 20
    keep_versions: int = 3

    def __post_init__(self) -> None:
        rules = (
            ("val_fraction", 0.0 <= self.val_fraction < 1.0, "must be in [0, 1)"),
            ("shard_rows", self.shard_rows is None or self.shard_rows >= 1,
             "must be at least 1 (or None for one file per split)"),
            ("sample_every", self.sample_every >= 1, "must be at least 1"),
            ("min_moves", self.min_moves >= 0, "must not be negative"),
            ("memory_budget_bytes", self.memory_budget_bytes >= MIN_MEMORY_BUDGET,
             f"must be at least {MIN_MEMORY_BUDGET}"),
            ("keep_versions", self.keep_versions >= 1, "must be at least 1"),
            ("seed", 0 <= self.seed < 2**63, "must be in [0, 2^63)"),
            ("format_version", self.format_version in WRITABLE_VERSIONS,
             f"must be one of {WRITABLE_VERSIONS}"),
        )
        for name, ok, message in rules:
            if not ok:
                raise PlaystreamError(f"{name} {message}, got {getattr(self, name)!r}",
                                      field=name)

    def to_manifest(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["window"] = repr(self.window)
        return out


@dataclass(frozen=True)
class CompactionResult:
    rows: int
    games: int
    train_rows: int
    val_rows: int
    outputs: list[Path] | list[str]   # local files, or URLs of objects
    manifest: Path | str
    version: str                      # the version published (the file name for one .npz)
    chunks: list[ChunkEntry]  # every chunk considered; rows_used 0 for those left out
    quarantined: list[QuarantinedChunk]
    bytes_written: int
    seconds: float
    duplicate_moves: int = 0  # games repeating an older game's moves under another id

    @property
    def chunks_used(self) -> list[ChunkEntry]:
        return [c for c in self.chunks if c.rows_used]


@dataclass
class _Chunk:
    """A verified chunk and what the passes decided about it."""

    name: ChunkName
    path: Path
    config_key: str
    sealed_at: datetime
    origin: ChunkOrigin
    rows: int
    sha256: str
    selection: Path  # uint8 code per row (UNUSED/TRAIN/VAL) in the work folder
    skipped: int  # records of the chunk's range skipped when it was written
    move_digests: dict[str, str]  # game_id -> hex digest of its moves (chunk metadata)
    planes: Planes  # how the chunk stores its planes (observed for a dense chunk)
    packed: bool  # stores its planes packed (format 3), so blocks move as stored
    row_bytes: int = 0  # stored bytes of one row, on average (planes packed, unless dense)
    usable: int = 0
    used: int = 0
    split_rows: dict[str, int] = field(default_factory=dict)  # used rows by split
    split_games: dict[str, int] = field(default_factory=dict)

    def entry(self) -> ChunkEntry:
        return ChunkEntry(self.name.filename, self.config_key, self.name.stream,
                          self.name.first, self.name.last, self.rows, self.used, self.sha256,
                          self.origin.to_json())


class _Counter:
    """The running count handed to ``progress``: rows written to the outputs so far, so a
    progress bar ends at the summary's ``rows`` (the verify and planning passes read the
    chunks too, but counting them would count each row several times)."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self.done = 0

    def advance(self, rows: int) -> None:
        self.done += rows
        if self._progress is not None:
            self._progress(self.done)


def _digests(ids: np.ndarray) -> np.ndarray:
    """blake2b-128 of each id (one hash per game, not per row)."""
    joined = b"".join(hashlib.blake2b(s.encode(), digest_size=DIGEST_BYTES).digest()
                      for s in ids.tolist())
    return np.frombuffer(joined, dtype=DIGEST_DTYPE)


def val_side(game_ids: np.ndarray, val_fraction: float) -> np.ndarray:
    """True for the rows whose game goes to val: the first 8 bytes of sha256(game_id) as a
    fraction of 2^64 below ``val_fraction``. A game lands on the same side in every run and
    every dataset, so val never holds positions of a game trained on."""
    if val_fraction <= 0.0 or game_ids.size == 0:
        return np.zeros(game_ids.size, bool)
    unique, inverse = np.unique(game_ids, return_inverse=True)
    head = np.frombuffer(b"".join(hashlib.sha256(s.encode()).digest()[:8]
                                  for s in unique.tolist()), dtype=">u8")
    return (head / 2.0**64 < val_fraction)[inverse]


def compact(store: ChunkStore, config_key: str | None, output: str | os.PathLike[str],
            options: CompactOptions = CompactOptions(), *,
            progress: Progress | None = None, allow_empty: bool = True) -> CompactionResult:
    """Compact the sealed chunks of ``config_key`` (None: the store's only configuration)
    into ``output``: a ``.npz`` file, or a dataset directory of versions (see publish), as a
    local path or an ``s3://`` URL. Without ``allow_empty``, a dataset of no rows is an
    EmptyResultError and nothing is published."""
    started = time.monotonic()
    output = output if is_object_url(output) else Path(output)
    if is_single_file(output) and (options.val_fraction > 0 or options.shard_rows is not None):
        raise PlaystreamError("a single .npz output cannot hold a val split or shards; give a "
                              "directory as the output", path=str(output),
                              field="val_fraction" if options.val_fraction > 0
                              else "shard_rows")
    key = _resolve_key(store, config_key)
    counter = _Counter(progress)
    try:
        with open_publication(output, keep_versions=options.keep_versions) as pub:
            chunks, config, quarantined, superseded = _verified_chunks(
                store, key, pub.work_dir, options.memory_budget_bytes)
            duplicates = _select_usable(chunks, options)  # reported by the caller
            _apply_window(chunks, options.window)
            _plan_splits(chunks, options.val_fraction)
            if not allow_empty and not any(c.used for c in chunks):
                raise _empty_result(chunks, quarantined, key)
            outputs = _write(chunks, config, options, pub, quarantined, counter, duplicates)
            games = {s: sum(c.split_games.get(s, 0) for c in chunks) for s in SPLITS}
            manifest = build_manifest(config, options.to_manifest(),
                                      [c.entry() for c in chunks], quarantined, outputs, games,
                                      duplicates, superseded)
            files, manifest_path = pub.commit(manifest)
    except OSError as err:
        raise DatasetError(f"compaction failed, nothing was published: {err.strerror or err}",
                           path=str(output), check="publish") from err
    totals = manifest["totals"]
    manifest_bytes = (manifest_path.stat().st_size if isinstance(manifest_path, Path)
                      else len(json.dumps(manifest, indent=2, sort_keys=True)) + 1)
    version = str(manifest_path).rstrip("/").rsplit("/", 2)[-2] if not pub.single_file \
        else str(output).rsplit("/", 1)[-1]
    return CompactionResult(
        rows=totals["rows"], games=totals["games"], train_rows=totals["train_rows"],
        val_rows=totals["val_rows"], outputs=files, manifest=manifest_path, version=version,
        chunks=[c.entry() for c in chunks], quarantined=quarantined,
        bytes_written=totals["bytes"] + manifest_bytes,
        seconds=time.monotonic() - started, duplicate_moves=duplicates)


def _empty_result(chunks: list[_Chunk], quarantined: list[QuarantinedChunk],
                  key: str) -> EmptyResultError:
    """Why nothing is left, by reason: records skipped at encoding, rows dropped by the
    options, chunks quarantined."""
    rows = sum(c.rows for c in chunks)
    reasons = [f"{sum(c.skipped for c in chunks)} records skipped when the chunks were "
               f"written (invalid or of another configuration)"]
    if rows:
        reasons.append(f"{rows} rows dropped by dedup, --min-moves, --sample-every, "
                       f"--drop-duplicate-moves or --window")
    if quarantined:
        reasons.append(f"{len(quarantined)} chunks quarantined")
    return EmptyResultError(f"no rows to publish from {len(chunks)} chunks: "
                            + "; ".join(reasons) + " (--allow-empty publishes it anyway)",
                            config=key)


def _resolve_key(store: ChunkStore, config_key: str | None) -> str:
    if config_key is not None:
        return store.check_key(config_key)
    keys = store.config_keys()
    if len(keys) != 1:
        if not keys:
            raise ChunkError("the chunk store holds no configuration", path=store.location)
        raise ConfigMismatchError(f"the chunk store holds {len(keys)} configurations "
                                  f"({', '.join(keys)}); name the one to compact",
                                  path=store.location)
    return keys[0]


# -- 1. verification ------------------------------------------------------------------------
def _verified_chunks(store: ChunkStore, key: str, work: Path, budget: int
                     ) -> tuple[list[_Chunk], DatasetConfig, list[QuarantinedChunk], list[str]]:
    """The chunks of the cover of each stream (`chunk_cover`) that pass every check, oldest
    first by (sealed_at, name), and the names of the superseded ones; the chunks that fail a
    check are moved to quarantine. From an object store each chunk is downloaded into the
    work folder (its sha256 computed on the way). Refuses chunks whose configurations
    differ."""
    chunks: list[_Chunk] = []
    quarantined: list[QuarantinedChunk] = []
    config: DatasetConfig | None = None
    first_path = ""
    cover, superseded = chunk_cover(store.chunks(key))
    downloads = work / "chunks"
    downloads.mkdir()
    for index, name in enumerate(cover):
        path, digest = store.fetch(key, name, downloads)
        checked = _checked_chunk(path, name, budget)
        if isinstance(checked, str):
            moved = store.quarantine(key, name, path, checked)
            log.warning("chunk quarantined", extra={"path": store.url(key, name),
                                                    "reason": checked})
            quarantined.append(QuarantinedChunk(moved, checked))
            continue
        meta, chunk_meta = checked
        chunk_config = DatasetConfig.from_metadata(meta)
        if config is None:
            config, first_path = chunk_config, str(path)
        config.compatible_with(chunk_config, path=str(path), first_chunk=first_path)
        if config.key() != key:
            raise ConfigMismatchError(f"the chunks hold configuration {config.key()} but lie in "
                                      f"the folder of {key}", path=str(path))
        chunks.append(_Chunk(name, path, key, chunk_meta.sealed_at, chunk_meta.origin,
                             int(meta["rows"]), digest,
                             work / f"{index:08d}.selection.npy", chunk_meta.skipped_count,
                             {g: d for g, d in zip(chunk_meta.games, chunk_meta.moves_digests)
                              if d is not None},
                             read_planes(path, _block_rows(budget, chunk_config, 0)),
                             int(meta["format_version"]) not in DENSE_FORMAT_VERSIONS))
    if config is None:
        raise ChunkError(f"no valid sealed chunk for configuration {key} "
                         f"({len(quarantined)} quarantined)", config=key)
    chunks.sort(key=lambda c: (c.sealed_at, c.name))
    return chunks, config, quarantined, [n.filename for n in superseded]


def _checked_chunk(path: Path, name: ChunkName, budget: int
                   ) -> tuple[dict[str, Any], ChunkMetadata] | str:
    """The dataset metadata and chunk metadata of a chunk that passes every check, or why it
    must be quarantined: a failed check, or metadata that is malformed or disagrees with the
    file name (a chunk renamed or copied by hand cannot be ordered or trusted for progress)."""
    report = validate_npz_dataset(path, block_bytes=budget // BLOCK_FRACTION)
    if not report.ok:
        # The first failure is the cause; later checks fail or do not run because of it.
        r = report.failures[0]
        return (f"{r.name} failed: {r.message}" + (f" (array {r.array})" if r.array else "")
                + (f" (row {r.row})" if r.row is not None else ""))
    meta = read_metadata(path)
    try:
        chunk_meta = ChunkMetadata.from_metadata(meta, path=path)
        chunk_meta.check_name(name, path=str(path))
    except ChunkError as err:
        return f"{err.context.get('field', 'metadata')}: {err.message}"
    return meta, chunk_meta


def _small_columns(chunk: _Chunk) -> tuple[np.ndarray, np.ndarray]:
    """game_id and move_number of a chunk, read through a memory map so that no other array
    is read (chunk writers store chunks uncompressed); also records the chunk's stored bytes
    per row, which size the shuffle buckets."""
    with open_layout(chunk.path) as layout:
        rows = max(1, layout.rows)
        chunk.row_bytes = math.ceil(sum(layout.members[name].nbytes for name in layout.arrays
                                        if name != FEATURE_CONSTANT) / rows)
        game_id, move = (np.array(layout.archive.memmap(layout.members[name]))
                         for name in ("game_id", "move_number"))
        return game_id, move


def _block_rows(budget: int, config: DatasetConfig, row_bytes: int, *,
                unpacked: bool = True) -> int:
    """Rows per block of ``row_bytes`` stored bytes, next to its form as read, selected and
    split. With ``unpacked`` a block may also be unpacked to dense planes (read from a dense
    chunk, moved to another storage, written dense), which on a 19x19 board is 45 times the
    packed row: sizing every block for that made blocks of packed rows tiny, and their
    pieces in the shuffle buckets tinier."""
    dense = 4 * len(config.channels) * config.height * config.width if unpacked else 0
    return max(1, budget // BLOCK_FRACTION // (row_bytes + dense))


# -- 2. usable rows -------------------------------------------------------------------------
def _select_usable(chunks: list[_Chunk], options: CompactOptions) -> int:
    """Oldest first: a game is a run of rows with one game_id and increasing move numbers
    (so a record delivered twice in a row is two runs); the oldest run of each game wins.
    Returns the games that repeat an older game's move sequence under another id (from the
    chunks' ``moves_digests``); they are dropped with ``drop_duplicate_moves``."""
    seen = DigestSet() if options.dedup else None
    seen_moves = DigestSet()
    duplicates = 0
    for chunk in chunks:
        game_id, move = _small_columns(chunk)
        keep = np.zeros(game_id.size, bool)
        if game_id.size:
            starts = np.flatnonzero(np.concatenate(
                ([True], (game_id[1:] != game_id[:-1]) | (move[1:] <= move[:-1]))))
            lengths = np.diff(np.append(starts, game_id.size))
            fresh = (seen.insert(_digests(game_id[starts])) if seen is not None
                     else np.ones(starts.size, bool))
            repeated = _repeated_moves(chunk, game_id[starts], fresh, seen_moves)
            duplicates += int(repeated.sum())
            games = fresh & (lengths >= options.min_moves)
            if options.drop_duplicate_moves:
                games &= ~repeated
            keep = np.repeat(games, lengths) & (move % options.sample_every == 0)
        chunk.usable = int(keep.sum())
        np.save(chunk.selection, keep.astype(np.uint8) * TRAIN, allow_pickle=False)
    return duplicates


def _repeated_moves(chunk: _Chunk, run_ids: np.ndarray, fresh: np.ndarray,
                    seen_moves: DigestSet) -> np.ndarray:
    """True for the fresh runs whose move sequence an older game already had. A chunk
    written before the writer recorded ``moves_digests`` has none, so its games count as
    distinct."""
    by_id = chunk.move_digests
    repeated = np.zeros(run_ids.size, bool)
    known = [i for i in np.flatnonzero(fresh).tolist() if run_ids[i] in by_id]
    if known:
        try:
            keys = np.array([bytes.fromhex(by_id[run_ids[i]]) for i in known], DIGEST_DTYPE)
        except ValueError:
            return repeated  # not hex: the chunk passed validation, so ignore, don't guess
        repeated[known] = ~seen_moves.insert(keys)
    return repeated


# -- 3. window ------------------------------------------------------------------------------
def _apply_window(chunks: list[_Chunk], window: WindowPolicy) -> None:
    """Keep the newest W(N) usable rows: whole chunks from the newest back, then the newest
    rows of one partly used chunk."""
    total = sum(c.usable for c in chunks)
    size = window.size(total)
    if not 0 <= size <= total:
        raise PlaystreamError(f"window {window!r} kept {size} of {total} rows",
                              field="window")
    left = size
    for chunk in reversed(chunks):
        chunk.used = min(chunk.usable, left)
        left -= chunk.used
        if 0 < chunk.used < chunk.usable:
            codes = np.load(chunk.selection, allow_pickle=False)
            drop = chunk.usable - chunk.used
            codes[np.cumsum(codes != UNUSED) <= drop] = UNUSED
            np.save(chunk.selection, codes, allow_pickle=False)


# -- 4. plan --------------------------------------------------------------------------------
def _plan_splits(chunks: list[_Chunk], val_fraction: float) -> None:
    """Train or val for every used row, and the exact rows and games per side. After dedup
    a game lies in one chunk only, so per-chunk distinct counts add up."""
    for chunk in chunks:
        if not chunk.used:
            continue
        game_id, _ = _small_columns(chunk)
        codes = np.load(chunk.selection, allow_pickle=False)
        used = codes != UNUSED
        codes[used & val_side(game_id, val_fraction)] = VAL
        np.save(chunk.selection, codes, allow_pickle=False)
        for split, code in _CODES.items():
            chunk.split_rows[split] = int((codes == code).sum())
            chunk.split_games[split] = int(np.unique(game_id[codes == code]).size)


# -- 5. write -------------------------------------------------------------------------------
class _SplitSink:
    """The rows of one split into ``train.npz``, or into shards of ``shard_rows`` rows
    (``train-00000.npz``, ...). A split always gets at least one (possibly empty) file."""

    def __init__(self, split: str, pub: Publication | ObjectPublication, config: DatasetConfig,
                 planes: Planes, options: CompactOptions, block_rows: int,
                 extra: dict[str, Any], counter: _Counter) -> None:
        self.split = split
        self._counter = counter
        self._pub = pub
        self._config = config
        self._planes = None if options.format_version in DENSE_FORMAT_VERSIONS else planes
        self._options = options
        self._block_rows = block_rows
        self._extra = extra
        self._writer: NPZDatasetWriter | None = None
        self._rows = 0  # in the open file
        self.files: list[tuple[Path, int]] = []

    def _open(self) -> NPZDatasetWriter:
        shard = None if self._options.shard_rows is None else len(self.files)
        return NPZDatasetWriter(self._pub.file_path(self.split, shard), self._config,
                                dense_policy=self._options.dense_policy,
                                compress=self._options.compress,
                                format_version=self._options.format_version,
                                planes=self._planes, extra_metadata=self._extra)

    def write(self, batch: PackedRows) -> None:
        """Append in pieces of at most one block (the dense policy of a piece is built in
        memory) and never across a shard boundary."""
        done = 0
        limit = self._options.shard_rows
        while done < len(batch):
            if self._writer is None:
                self._writer = self._open()
            room = self._block_rows if limit is None else min(self._block_rows,
                                                               limit - self._rows)
            count = min(room, len(batch) - done)
            self._writer.write(batch if count == len(batch)
                               else batch.take(np.arange(done, done + count)))
            done += count
            self._rows += count
            self._counter.advance(count)
            if self._rows == limit:
                self._close_writer()

    def _close_writer(self) -> None:
        assert self._writer is not None
        writer, self._writer = self._writer, None
        writer.close()
        self.files.append((writer.path, self._rows))
        self._rows = 0

    def close(self) -> None:
        if self._writer is None and not self.files:
            self._writer = self._open()
        if self._writer is not None:
            self._close_writer()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def _write(chunks: list[_Chunk], config: DatasetConfig, options: CompactOptions,
           pub: Publication | ObjectPublication, quarantined: list[QuarantinedChunk],
           counter: _Counter, duplicates: int) -> list[OutputEntry]:
    budget = options.memory_budget_bytes
    row_bytes = max((c.row_bytes for c in chunks if c.used), default=1)
    if options.dense_policy:
        row_bytes += 4 * config.policy_size
    # One storage for every output, so that rows move packed from chunk to file.
    planes = Planes.merge([c.planes for c in chunks if c.used] or [chunks[0].planes])
    unpacked = options.format_version in DENSE_FORMAT_VERSIONS or any(
        not (c.packed and c.planes.same_as(planes)) for c in chunks if c.used)
    block_rows = _block_rows(budget, config, row_bytes, unpacked=unpacked)
    extra: dict[str, Any] = {}
    if pub.single_file:
        # The file carries its manifest; everything in it is known before the first row.
        train_rows = sum(c.split_rows.get("train", 0) for c in chunks)
        train_games = sum(c.split_games.get("train", 0) for c in chunks)
        planned = [OutputEntry(pub.file_path("train", None).name, "train", train_rows,
                               train_games, None, None)]
        extra["manifest"] = build_manifest(config, options.to_manifest(),
                                           [c.entry() for c in chunks], quarantined, planned,
                                           {"train": train_games}, duplicates)
    splits = SPLITS if options.val_fraction > 0 else SPLITS[:1]
    sinks = {s: _SplitSink(s, pub, config, planes, options, block_rows, extra, counter)
             for s in splits}
    try:
        if options.shuffle:
            _shuffled_write(chunks, config, planes, sinks, options, pub.work_dir, block_rows)
        else:
            for rows, codes in _selected_rows(chunks, block_rows, planes):
                for split, part in _by_split(rows, codes):
                    sinks[split].write(part)
        for sink in sinks.values():
            sink.close()
    except BaseException:
        for sink in sinks.values():
            sink.abort()
        raise
    return [_describe_output(path, split, rows, pub)
            for split, sink in sinks.items() for path, rows in sink.files]


def _describe_output(path: Path, split: str, rows: int,
                     pub: Publication | ObjectPublication) -> OutputEntry:
    games = int(read_metadata(path)["games"])
    name = pub.file_path("train", None).name if pub.single_file else path.name
    return OutputEntry(name, split, rows, games, file_sha256(path), path.stat().st_size)


def _selected_rows(chunks: list[_Chunk], block_rows: int, planes: Planes
                   ) -> Iterator[tuple[PackedRows, np.ndarray]]:
    """The used rows in chunk order, in blocks of at most ``block_rows``, stored under
    ``planes``, with their split codes. The rows of consecutive chunks are joined into one
    block: chunks sealed by age or by the dense bytes they held hold a few hundred rows, and
    every block costs per-bucket work in a shuffle. Each chunk is read to its end, so its
    checksums are verified before anything derived from it is published."""
    run: list[tuple[PackedRows, np.ndarray]] = []
    count = 0
    for chunk in chunks:
        if not chunk.used:
            continue
        codes = np.load(chunk.selection, allow_pickle=False)
        start = 0
        for batch in iter_packed_row_batches(chunk.path, block_rows, planes):
            part = codes[start:start + len(batch)]
            start += len(batch)
            picked = np.flatnonzero(part)
            if not picked.size:
                continue
            if run and count + picked.size > block_rows:
                yield _joined(run)
                run, count = [], 0
            run.append(((batch if picked.size == len(batch) else batch.take(picked)),
                        part[picked]))
            count += picked.size
    if run:
        yield _joined(run)


def _joined(run: list[tuple[PackedRows, np.ndarray]]) -> tuple[PackedRows, np.ndarray]:
    if len(run) == 1:
        return run[0]
    return (PackedRows.concat([rows for rows, _ in run]),
            np.concatenate([codes for _, codes in run]))


def _by_split(rows: PackedRows, codes: np.ndarray) -> Iterator[tuple[str, PackedRows]]:
    for split, code in _CODES.items():
        mine = np.flatnonzero(codes == code)
        if mine.size:
            yield split, rows if mine.size == len(rows) else rows.take(mine)


# Arrays of a bucket piece: the packed planes, then every other array of the rows.
_PIECE_ARRAYS = ("bits", "floats") + tuple(n for n in BATCH_ARRAYS if n != "features")


class _Buckets:
    """Bucket files of one split for the external shuffle. A bucket file is a sequence of
    pieces: (rows, policy entries, game_id width) as three int64, then the raw bytes of each
    array of `_PIECE_ARRAYS`, planes packed as in the outputs. Pieces are small when there
    are many buckets, so they carry no per-array .npy header to parse: dtypes and shapes
    follow from the format, the configuration and the planes."""

    def __init__(self, folder: Path, count: int, config: DatasetConfig, planes: Planes) -> None:
        folder.mkdir()
        self.paths = [folder / f"{b:06d}.bucket" for b in range(count)]
        self._config = config
        self._planes = planes

    def scatter(self, rows: PackedRows, rng: np.random.Generator) -> None:
        target = rng.integers(0, len(self.paths), size=len(rows))
        order = np.argsort(target, kind="stable")
        bounds = np.searchsorted(target[order], np.arange(len(self.paths) + 1))
        for b in np.flatnonzero(np.diff(bounds)):
            piece = rows.take(order[bounds[b]:bounds[b + 1]])
            with open(self.paths[b], "ab") as fh:
                fh.write(np.array([len(piece), piece.rows.nnz,
                                   piece.rows.game_id.dtype.itemsize // 4], np.int64).tobytes())
                for name in _PIECE_ARRAYS:
                    arr = getattr(piece, name) if name in ("bits", "floats") \
                        else getattr(piece.rows, name)
                    fh.write(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data)

    def _piece_arrays(self, rows: int, nnz: int, width: int
                      ) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        config, storage = self._config, self._planes.storage
        planes = {"bits": (np.dtype(np.uint8), (rows, len(storage.bits),
                                                packed_width(config.height * config.width))),
                  "floats": (FIXED_DTYPES["features"],
                             (rows, len(storage.floats), config.height, config.width))}
        out = []
        for name in _PIECE_ARRAYS:
            if name in planes:
                out.append((name, *planes[name]))
                continue
            shape = ((rows + 1,) if name == "policy_indptr"
                     else (nnz,) if name in ("policy_indices", "policy_values")
                     else (rows,) + row_shape(name, config))
            out.append((name, game_id_dtype(width) if name == "game_id"
                        else FIXED_DTYPES[name], shape))
        return out

    def load(self, b: int) -> PackedRows | None:
        """The rows of bucket ``b``, in scatter order; the file is removed."""
        path = self.paths[b]
        if not path.exists():
            return None
        pieces = []
        config = self._config
        with open(path, "rb") as fh:
            while head := fh.read(24):
                layout = self._piece_arrays(*(int(v) for v in np.frombuffer(head, np.int64)))
                size = sum(math.prod(shape) * dtype.itemsize for _, dtype, shape in layout)
                data = fh.read(size)
                if len(head) != 24 or len(data) != size:
                    raise DatasetError("shuffle bucket ends in the middle of a piece",
                                       path=str(path), check="readable")
                arrays, offset = {}, 0
                for name, dtype, shape in layout:
                    count = math.prod(shape)
                    arrays[name] = np.frombuffer(data, dtype, count, offset).reshape(shape)
                    offset += count * dtype.itemsize
                bits, floats = arrays.pop("bits"), arrays.pop("floats")
                none = np.empty((bits.shape[0], 0, config.height, config.width), np.float32)
                pieces.append(PackedRows(self._planes, bits, floats,
                                         RowBatch(features=none, **arrays)))
        path.unlink()
        return pieces[0] if len(pieces) == 1 else PackedRows.concat(pieces)


def _shuffled_write(chunks: list[_Chunk], config: DatasetConfig, planes: Planes,
                    sinks: dict[str, _SplitSink], options: CompactOptions, work: Path,
                    block_rows: int) -> None:
    """Scatter every used row to a random bucket of its split, then permute each bucket in
    memory. A bucket is an eighth of the budget: it is held twice while permuted, next to the
    writer's fixed blocks; the result depends only on the seed, the data and the budget."""
    rng = np.random.default_rng(options.seed)
    bucket_bytes = options.memory_budget_bytes // BUCKET_FRACTION
    buckets = {}
    for split in sinks:
        split_bytes = sum(c.split_rows.get(split, 0) * c.row_bytes for c in chunks)
        buckets[split] = _Buckets(work / f"buckets-{split}",
                                  max(1, math.ceil(split_bytes / bucket_bytes)), config, planes)
    for rows, codes in _selected_rows(chunks, block_rows, planes):
        for split, part in _by_split(rows, codes):
            buckets[split].scatter(part, rng)
    for split, split_buckets in buckets.items():
        for b in range(len(split_buckets.paths)):
            _merge_bucket(split_buckets, b, sinks[split], rng)


def _merge_bucket(buckets: _Buckets, b: int, sink: _SplitSink,
                  rng: np.random.Generator) -> None:
    """Write bucket ``b`` in a random order. A function of its own so that the bucket is
    freed before the next one is loaded."""
    rows = buckets.load(b)
    if rows is not None:
        sink.write(rows.take(rng.permutation(len(rows))))
