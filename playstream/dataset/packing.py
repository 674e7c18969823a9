"""Format 2's compact feature planes: where each channel is stored, and the codec.

A channel that holds only 0 and 1 in a file is stored as bits (one bit per cell, packed per
row and channel over the H*W cells, as KataGo's ``binaryInputNCHWPacked``); a channel that is
the same plane in every row (a board mask) is stored once; any other channel as float32. The
writer decides from the data it wrote, so a game never has to declare it to benefit, and a
reader rebuilds exactly the dense float32 planes that were written.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np

from playstream.dataset.batch import RowBatch
from playstream.errors import DatasetError

_KINDS = ("bits", "float", "constant")


def packed_width(cells: int) -> int:
    """Bytes per packed channel of ``cells`` cells."""
    return (cells + 7) // 8


@dataclass(frozen=True)
class FeatureStorage:
    """Channel indices (into the file's ``channels``) by how they are stored."""

    bits: tuple[int, ...]
    floats: tuple[int, ...]
    constant: tuple[int, ...]

    @classmethod
    def decide(cls, binary: np.ndarray, constant: np.ndarray) -> FeatureStorage:
        """From per-channel flags observed over every row written: constant wins over bits."""
        return cls(bits=tuple(int(c) for c in np.flatnonzero(binary & ~constant)),
                   floats=tuple(int(c) for c in np.flatnonzero(~binary & ~constant)),
                   constant=tuple(int(c) for c in np.flatnonzero(constant)))

    def to_metadata(self) -> dict[str, list[int]]:
        return {"bits": list(self.bits), "float": list(self.floats),
                "constant": list(self.constant)}

    @classmethod
    def from_metadata(cls, value: Any, num_channels: int, path: str) -> FeatureStorage:
        """Checked: every channel stored exactly once, by one of the three kinds."""
        def fail(message: str) -> DatasetError:
            return DatasetError(f"feature_storage {message}", path=path, array="metadata",
                                check="metadata", field="feature_storage")

        if not isinstance(value, Mapping) or set(value) != set(_KINDS):
            raise fail(f"must be an object with exactly the keys {', '.join(_KINDS)}")
        lists = {}
        for kind in _KINDS:
            items = value[kind]
            if not isinstance(items, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in items):
                raise fail(f"{kind} must be a list of channel indices")
            lists[kind] = tuple(items)
        every = sorted(lists["bits"] + lists["float"] + lists["constant"])
        if every != list(range(num_channels)):
            raise fail(f"must name each of the {num_channels} channels exactly once")
        return cls(bits=lists["bits"], floats=lists["float"], constant=lists["constant"])

    def pack_bits(self, features: np.ndarray) -> np.ndarray:
        """uint8 [N, Cb, ceil(H*W/8)] from dense [N, C, H, W] (the bit channels only)."""
        n = features.shape[0]
        cells = features.shape[2] * features.shape[3]
        picked = features[:, list(self.bits)].reshape(n, len(self.bits), cells)
        return np.packbits(picked != 0, axis=-1, bitorder="little")

    def floats_of(self, features: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(features[:, list(self.floats)], dtype=np.float32)

    def constant_of(self, first_row: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(first_row[list(self.constant)], dtype=np.float32)

    @classmethod
    def dense(cls, num_channels: int) -> FeatureStorage:
        """Formats 1 and 2 seen through the same codec: every channel a float channel, so
        dense and packed files share one gather (`gather`)."""
        return cls(bits=(), floats=tuple(range(num_channels)), constant=())

    def unpack(self, bits: np.ndarray, floats: np.ndarray, constant: np.ndarray,
               height: int, width: int) -> np.ndarray:
        """Dense float32 [N, C, H, W]: one vectorised pass per kind, no loop over rows."""
        n = floats.shape[0]
        channels = len(self.bits) + len(self.floats) + len(self.constant)
        out = np.empty((n, channels, height, width), np.float32)
        self.gather(out.reshape(n, channels, height * width), bits, floats, constant)
        return out

    def gather(self, out: np.ndarray, bits: np.ndarray | None, floats: np.ndarray,
               constant: np.ndarray | None, rows: np.ndarray | None = None,
               cells: np.ndarray | None = None, channels: np.ndarray | None = None) -> None:
        """Write ``out[i, c, j] = plane[rows[i], channels[c], cells[j]]`` into ``out``
        (float32 [n, C, H*W], e.g. a slice of the training batch), from the stored members
        of all rows of a range (views of the mapped file). ``rows`` None: every row in order;
        ``cells``/``channels`` None: unpermuted.

        Only the chosen rows' stored bytes are read, bits are expanded as uint8 (a quarter
        of the float32 traffic), cells and channels are moved in one ``take`` over the
        flattened (channel, cell) axis, and the cast to float32 writes straight into the
        batch, so every output byte is written once. ``bits``/``constant`` may be None
        when the storage has no channel of that kind (a dense file). This is the loader's
        path for dense files, one call per (range, transform) group of a batch; packed
        batches go through `gather_moved`, whose fewer calls pay there."""
        n, _, num_cells = _checked_out(out).shape
        routes = self._unmoved if channels is None else self._routes(channels)
        for route in routes:
            stored = (bits, floats, constant)[route.kind]
            assert stored is not None
            if route.kind == 2:  # constant: [Cc, H*W], the same for every row
                planes = stored.reshape(1, -1, num_cells)
            else:
                picked = stored if rows is None else stored[rows]
                planes = (np.unpackbits(picked, axis=-1, count=num_cells, bitorder="little")
                          if route.kind == 0 else picked.reshape(n, -1, num_cells))
            _move(out, route, planes, cells)

    def gather_moved(self, out: np.ndarray, bits: np.ndarray, floats: np.ndarray,
                     constant: np.ndarray, transforms: np.ndarray,
                     cells: np.ndarray | None, channels: np.ndarray | None) -> None:
        """Write row i of the stored ``bits``/``floats`` (the rows of a whole batch, already
        gathered from its ranges) into ``out[i]`` (float32 [n, C, H*W]) moved by transform
        ``transforms[i]``: ``cells[k]`` (and ``channels[k]``, None: unpermuted) as in
        `gather` (``cells`` may be None if every transform is 0).

        Why not `gather` per (range, transform) group: with a shuffle buffer a batch is
        tens of groups of a few rows, and the packed path's steps per group (index the rows'
        bits, unpack, move, cast) cost more in numpy calls than in bytes. Here the bits are
        unpacked once per batch and each transform drawn costs one ``take`` per kind of
        channel, so the calls per batch are O(transforms), not O(ranges x transforms). A
        dense file gains nothing from it (its rows would be copied twice more), which is
        why the loader keeps `gather` there."""
        n, _, num_cells = _checked_out(out).shape
        # The rows ordered by transform (stably), so each transform's rows are one slice of
        # the unpacked planes (a view) and only their places in ``out`` are scattered.
        order: np.ndarray | None = np.argsort(transforms, kind="stable")
        drawn, starts = np.unique(transforms[order], return_index=True)
        if drawn.size == 1:
            order = None  # one transform for the whole batch: every row, in place
        else:
            bits, floats = bits[order], floats[order]
        stored = (np.unpackbits(bits, axis=-1, count=num_cells, bitorder="little"),
                  floats.reshape(n, -1, num_cells), constant.reshape(1, -1, num_cells))
        for k, start, stop in zip(drawn.tolist(), starts.tolist(), starts[1:].tolist() + [n]):
            rows = None if order is None else order[start:stop]
            routes = (self._unmoved if channels is None or k == 0
                      else self._routes(channels[k]))
            moved = None
            if k != 0:
                assert cells is not None
                moved = cells[k]
            for route in routes:
                planes = stored[route.kind]
                _move(out, route, planes if route.kind == 2 else planes[start:stop], moved,
                      rows)

    def _routes(self, source: np.ndarray) -> list[_Route]:
        """Which output channels each kind fills, output channel c taking stored channel
        ``source[c]``."""
        kinds = (self.bits, self.floats, self.constant)
        kind = np.empty(sum(map(len, kinds)), np.int64)
        position = np.empty_like(kind)
        for k, stored in enumerate(kinds):
            kind[list(stored)] = k
            position[list(stored)] = np.arange(len(stored))
        routes = []
        for k, stored in enumerate(kinds):
            targets = np.flatnonzero(kind[source] == k)
            if targets.size == 0:
                continue
            positions = position[source[targets]]
            consecutive = targets[-1] - targets[0] + 1 == targets.size
            in_order = positions.size == len(stored) and bool(
                (positions == np.arange(len(stored))).all())
            routes.append(_Route(
                k, targets, positions,
                slice(int(targets[0]), int(targets[-1]) + 1) if consecutive else None, in_order))
        return routes

    @cached_property
    def _unmoved(self) -> list[_Route]:
        """`_routes` of unpermuted channels, worked out once: the loader calls `gather`
        once per (range, transform) of every dense batch, often for a handful of rows."""
        return self._routes(np.arange(len(self.bits) + len(self.floats) + len(self.constant)))


@dataclass(frozen=True, eq=False)
class _Route:
    """Output channels ``targets`` (the slice ``run`` when consecutive) take the channels at
    ``positions`` of one kind's stored array (``in_order``: all of them, in order)."""

    kind: int  # 0 bits, 1 float, 2 constant
    targets: np.ndarray
    positions: np.ndarray
    run: slice | None
    in_order: bool


def _checked_out(out: np.ndarray) -> np.ndarray:
    if out.dtype != np.float32 or out.ndim != 3 or not out.flags.c_contiguous:
        raise DatasetError(f"gather needs a C-contiguous float32 [n, C, H*W] buffer, got "
                           f"{out.dtype} {out.shape}", check="arguments")
    return out


def _move(out: np.ndarray, route: _Route, planes: np.ndarray, cells: np.ndarray | None,
          rows: np.ndarray | None = None) -> None:
    """``out[rows, targets] = planes[:, positions][..., cells]`` in as few passes as the
    layout allows (``planes`` may have one row, broadcast to all; ``rows`` None: every row
    of ``out``)."""
    m, stored, num_cells = planes.shape
    if cells is not None:
        index = (route.positions[:, None] * num_cells + cells[None]).ravel()
        flat = planes.reshape(m, stored * num_cells)
        if (rows is None and route.targets.size == out.shape[1] and planes.dtype == out.dtype
                and m == len(out)):
            # straight into the batch (mode="wrap": "raise" would buffer ``out``)
            np.take(flat, index, axis=1, out=out.reshape(m, -1), mode="wrap")
            return
        planes = np.take(flat, index, axis=1, mode="wrap").reshape(m, -1, num_cells)
    elif not route.in_order:
        planes = np.take(planes, route.positions, axis=1, mode="wrap")
    if rows is None:
        if route.run is not None:  # a run of channels: a slice, no scatter
            out[:, route.run] = planes
        else:
            out[:, route.targets] = planes
    elif route.run is not None:
        out[rows, route.run] = planes
    else:
        out[rows[:, None], route.targets] = planes


@dataclass(frozen=True)
class Planes:
    """How the planes of some rows are stored: the channel kinds and the constant planes
    (float32 [Cc, H, W]) they share."""

    storage: FeatureStorage
    constant: np.ndarray

    def same_as(self, other: Planes) -> bool:
        return self.storage == other.storage and np.array_equal(self.constant, other.constant)

    @classmethod
    def merge(cls, parts: Sequence[Planes]) -> Planes:
        """One storage that holds the rows of every part exactly: a channel stays constant if
        it is the same plane in every part, is bits if it holds only 0 and 1 in every part,
        and is float otherwise (a part stores a channel as float only when it is not binary
        there)."""
        if not parts:
            raise DatasetError("merge needs at least one part", check="arguments")
        first = parts[0].storage
        channels = len(first.bits) + len(first.floats) + len(first.constant)
        binary, constant = np.ones(channels, bool), np.ones(channels, bool)
        planes: dict[int, np.ndarray] = {}
        for part in parts:
            kinds = part.storage
            binary[list(kinds.floats)] = False
            constant[list(kinds.bits + kinds.floats)] = False
            for c, plane in zip(kinds.constant, part.constant):
                binary[c] &= bool(((plane == 0) | (plane == 1)).all())
                if not np.array_equal(planes.setdefault(c, plane), plane):
                    constant[c] = False
        storage = FeatureStorage.decide(binary, constant)
        shape = (len(storage.constant),) + parts[0].constant.shape[1:]
        return cls(storage, np.array([planes[c] for c in storage.constant],
                                     np.float32).reshape(shape))


@dataclass(frozen=True, eq=False)
class PackedRows:
    """Rows whose planes stay as format 3 stores them: what compaction moves, a fraction of
    the dense bytes (a twenty-seventh on a 19x19 board), so rows are unpacked only by readers that
    need the planes. ``rows`` holds every other array; its ``features`` are an empty
    [N, 0, H, W] so that RowBatch's checks, ``take`` and ``concat`` serve the rest."""

    planes: Planes
    bits: np.ndarray  # uint8 [N, Cb, ceil(H*W/8)]
    floats: np.ndarray  # float32 [N, Cf, H, W]
    rows: RowBatch

    def __post_init__(self) -> None:
        n, (_, _, h, w) = len(self.rows), self.rows.features.shape
        storage = self.planes.storage
        want = {"bits": (np.dtype(np.uint8), (n, len(storage.bits), packed_width(h * w))),
                "floats": (np.dtype("<f4"), (n, len(storage.floats), h, w))}
        for name, (dtype, shape) in want.items():
            arr = getattr(self, name)
            if arr.dtype != dtype or arr.shape != shape:
                raise DatasetError(f"packed planes {arr.dtype.str} {arr.shape}, expected "
                                   f"{dtype.str} {shape}", array=name, check="shapes")
        if self.rows.features.shape[1] != 0:
            raise DatasetError("the rows of packed planes must hold no dense planes",
                               array="features", check="shapes")

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return (self.bits.nbytes + self.floats.nbytes
                + sum(getattr(self.rows, name).nbytes for name in self.rows.__dataclass_fields__))

    @classmethod
    def from_dense(cls, rows: RowBatch, planes: Planes) -> PackedRows:
        """``rows`` stored under ``planes``; refuses rows that it cannot hold exactly (a bit
        channel holding another value than 0 or 1, a constant channel another plane)."""
        storage, features = planes.storage, rows.features
        bits = features[:, list(storage.bits)]
        if not ((bits == 0) | (bits == 1)).all():
            raise DatasetError("a channel stored as bits holds a value other than 0 and 1",
                               array="features", check="packing")
        if not (features[:, list(storage.constant)] == planes.constant[None]).all():
            raise DatasetError("a channel stored once differs from its constant plane",
                               array="features", check="packing")
        return cls(planes, storage.pack_bits(features), storage.floats_of(features),
                   _without_planes(rows))

    def unpacked(self) -> RowBatch:
        """The dense rows."""
        _, _, h, w = self.rows.features.shape
        features = self.planes.storage.unpack(self.bits, self.floats, self.planes.constant, h, w)
        fields = {name: getattr(self.rows, name) for name in self.rows.__dataclass_fields__}
        return RowBatch(**{**fields, "features": features})

    def stored_as(self, planes: Planes) -> PackedRows:
        """The same rows under ``planes`` (no copy when they are stored that way already)."""
        return self if self.planes.same_as(planes) else PackedRows.from_dense(self.unpacked(),
                                                                              planes)

    def take(self, index: np.ndarray) -> PackedRows:
        return PackedRows(self.planes, self.bits[index], self.floats[index],
                          self.rows.take(index))

    @classmethod
    def concat(cls, parts: Sequence[PackedRows]) -> PackedRows:
        """The rows of ``parts`` in order; every part must be stored the same way."""
        if not parts or any(not p.planes.same_as(parts[0].planes) for p in parts[1:]):
            raise DatasetError("concat needs parts stored the same way", check="arguments")
        return cls(parts[0].planes, np.concatenate([p.bits for p in parts]),
                   np.concatenate([p.floats for p in parts]),
                   RowBatch.concat([p.rows for p in parts]))


def _without_planes(rows: RowBatch) -> RowBatch:
    n, _, h, w = rows.features.shape
    fields = {name: getattr(rows, name) for name in rows.__dataclass_fields__}
    return RowBatch(**{**fields, "features": np.empty((n, 0, h, w), np.float32)})


class ChannelObserver:
    """Follows, batch by batch, which channels are binary and which are constant."""

    def __init__(self, num_channels: int) -> None:
        self.binary = np.ones(num_channels, bool)
        self.constant = np.ones(num_channels, bool)
        self.first_row: np.ndarray | None = None

    def observe(self, features: np.ndarray) -> None:
        if features.shape[0] == 0:
            return
        if self.first_row is None:
            self.first_row = np.array(features[0], np.float32)
        self.binary &= ((features == 0) | (features == 1)).all(axis=(0, 2, 3))
        self.constant &= (features == self.first_row[None]).all(axis=(0, 2, 3))

    def storage(self) -> FeatureStorage:
        if self.first_row is None:  # no rows: nothing is constant, every channel is bits
            return FeatureStorage.decide(self.binary, np.zeros_like(self.constant))
        return FeatureStorage.decide(self.binary, self.constant)

    def planes(self, height: int, width: int) -> Planes:
        storage = self.storage()
        constant = (storage.constant_of(self.first_row) if self.first_row is not None
                    else np.zeros((0, height, width), np.float32))
        return Planes(storage, constant)
