"""Format 2's compact feature planes: where each channel is stored, and the codec.

A channel that holds only 0 and 1 in a file is stored as bits (one bit per cell, packed per
row and channel over the H*W cells, as KataGo's ``binaryInputNCHWPacked``); a channel that is
the same plane in every row (a board mask) is stored once; any other channel as float32. The
writer decides from the data it wrote, so a game never has to declare it to benefit, and a
reader rebuilds exactly the dense float32 planes that were written.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

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

    def unpack(self, bits: np.ndarray, floats: np.ndarray, constant: np.ndarray,
               height: int, width: int) -> np.ndarray:
        """Dense float32 [N, C, H, W]: one vectorised pass per kind, no loop over rows."""
        n = bits.shape[0]
        channels = len(self.bits) + len(self.floats) + len(self.constant)
        out = np.empty((n, channels, height, width), np.float32)
        if self.bits:
            cells = np.unpackbits(bits, axis=-1, count=height * width, bitorder="little")
            out[:, list(self.bits)] = cells.reshape(n, len(self.bits), height, width)
        if self.floats:
            out[:, list(self.floats)] = floats
        if self.constant:
            out[:, list(self.constant)] = constant[None]
        return out


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
