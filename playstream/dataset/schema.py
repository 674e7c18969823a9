"""The playstream NPZ format, versions 1 to 3: array names, dtypes, bounds, the checksum rule.

Version 1: dense float32 feature planes, ``values_mp`` with 4 columns. Version 2: the same
dense planes, ``values_mp`` as wide as the configuration's seats and per-channel binary flags
in the metadata (the general game contract). Version 3 (the default) is version 2 with the
planes stored compactly: channels that hold only 0 and 1 as bits, channels that are the same
in every row once per file, the rest as float32 (`playstream.dataset.packing`). Every other
array is the same in versions 2 and 3, and a reader gives every version the same dense
`RowBatch`.

Everything the writer, the reader and the validator must agree on lives here, so that a change
of the format is one edit plus a version bump. docs/FORMAT.md is the prose form of this module.
"""
from __future__ import annotations

import hashlib
from typing import Final

import numpy as np

FORMAT_NAME: Final = "playstream-npz"
FORMAT_VERSION: Final = 3  # what the writer writes unless asked for dense planes
DENSE_FORMAT_VERSION: Final = 2  # `--features dense`: one float32 `features` array
DENSE_FORMAT_VERSIONS: Final = (1, 2)  # versions whose planes are one dense array
READABLE_VERSIONS: Final = (1, 2, 3)
WRITABLE_VERSIONS: Final = (DENSE_FORMAT_VERSION, FORMAT_VERSION)
"""Version 1 files still read: their values_mp has 4 columns whatever the player count
(metadata ``value_seats`` is 4 for them) and their channels carry no binary flags."""

MAX_GAME_ID_LEN: Final = 128
V1_VALUE_SEATS: Final = 4  # format 1: values_mp had one column per possible seat 1..4
MAX_VALUE_SEATS: Final = 8  # values_mp columns: the configuration's seats, at most 8
POLICY_SUM_TOLERANCE: Final = 1e-3
# Bounds on untrusted files: a hostile header or metadata member cannot make a reader allocate
# or parse without limit.
MAX_METADATA_BYTES: Final = 16 * 1024 * 1024
MAX_MEMBERS: Final = 32

METADATA: Final = "metadata"
DENSE_POLICY: Final = "policy"

# The arrays of a RowBatch, in the order they are stored in the zip.
BATCH_ARRAYS: Final = ("features", "globals", "values", "values_mp", "policy_indptr",
                       "policy_indices", "policy_values", "game_id", "move_number", "player",
                       "num_players")
# Arrays with one entry per row (policy_indptr has N+1, policy_indices/values have nnz).
PER_ROW_ARRAYS: Final = ("features", "globals", "values", "values_mp", "game_id",
                         "move_number", "player", "num_players")
FLOAT_ARRAYS: Final = ("features", "globals", "values", "values_mp", "policy_values",
                       DENSE_POLICY)
# Format 2 stores `features` as these three members (see playstream.dataset.packing).
FEATURE_BITS: Final = "features_bits"  # uint8 [N, Cb, ceil(H*W/8)], bit i = cell i
FEATURE_FLOATS: Final = "features_float"  # float32 [N, Cf, H, W]
FEATURE_CONSTANT: Final = "features_constant"  # float32 [Cc, H, W], once per file
PACKED_FEATURES: Final = (FEATURE_BITS, FEATURE_FLOATS, FEATURE_CONSTANT)

# game_id has no fixed dtype: it is '<U{n}' with 1 <= n <= MAX_GAME_ID_LEN (see is_game_id_dtype).
FIXED_DTYPES: Final[dict[str, np.dtype]] = {
    "features": np.dtype("<f4"),
    "globals": np.dtype("<f4"),
    "values": np.dtype("<f4"),
    "values_mp": np.dtype("<f4"),
    "policy_indptr": np.dtype("<i8"),
    "policy_indices": np.dtype("<i4"),
    "policy_values": np.dtype("<f4"),
    "move_number": np.dtype("<i4"),
    "player": np.dtype("i1"),
    "num_players": np.dtype("i1"),
    DENSE_POLICY: np.dtype("<f4"),
    FEATURE_BITS: np.dtype("u1"),
    FEATURE_FLOATS: np.dtype("<f4"),
    FEATURE_CONSTANT: np.dtype("<f4"),
}

NDIM: Final[dict[str, int]] = {
    "features": 4, "globals": 2, "values": 1, "values_mp": 2, "policy_indptr": 1,
    "policy_indices": 1, "policy_values": 1, "game_id": 1, "move_number": 1, "player": 1,
    "num_players": 1, DENSE_POLICY: 2, FEATURE_BITS: 3, FEATURE_FLOATS: 4, FEATURE_CONSTANT: 3,
}

REQUIRED_METADATA_KEYS: Final = (
    "format", "format_version", "game", "game_version", "board_type", "num_players",
    "feature_version", "history_length", "channels", "global_names", "policy_size", "height",
    "width", "rows", "games", "created_at", "dense_policy", "checksums", "extra",
)
V2_METADATA_KEYS: Final = ("value_seats", "binary_channels")
"""Configuration keys format 2 added (required from version 2 on)."""


def _stored_features(version: int, names: tuple[str, ...], *, per_row: bool
                     ) -> tuple[str, ...]:
    if version in DENSE_FORMAT_VERSIONS:
        return names
    packed = PACKED_FEATURES[:2] if per_row else PACKED_FEATURES
    return tuple(p for n in names for p in (packed if n == "features" else (n,)))


def file_arrays(dense_policy: bool, version: int = FORMAT_VERSION) -> tuple[str, ...]:
    """Names of the checksummed arrays a file holds (every member except metadata)."""
    return _stored_features(version, BATCH_ARRAYS, per_row=False) + (
        (DENSE_POLICY,) if dense_policy else ())


def per_row_arrays(dense_policy: bool, version: int = FORMAT_VERSION) -> tuple[str, ...]:
    """Names of the stored arrays with exactly one entry per row."""
    return _stored_features(version, PER_ROW_ARRAYS, per_row=True) + (
        (DENSE_POLICY,) if dense_policy else ())


def game_id_dtype(width: int) -> np.dtype:
    return np.dtype(f"<U{width}")


def is_game_id_dtype(dtype: np.dtype) -> bool:
    return (dtype.kind == "U" and dtype.str.startswith("<")
            and 1 <= dtype.itemsize // 4 <= MAX_GAME_ID_LEN)


def dtype_matches(name: str, dtype: np.dtype) -> bool:
    return is_game_id_dtype(dtype) if name == "game_id" else dtype == FIXED_DTYPES[name]


def expected_dtype_text(name: str) -> str:
    return f"<U1..<U{MAX_GAME_ID_LEN}" if name == "game_id" else FIXED_DTYPES[name].str


def checksum_hasher(dtype: np.dtype, shape: tuple[int, ...]) -> "hashlib._Hash":
    """sha256 pre-fed with '{dtype.str}|{shape}|' so that the same bytes read as another dtype
    or shape (a reshaped or retyped array) give another digest; the caller feeds the raw
    C-order bytes."""
    prefix = f"{dtype.str}|{','.join(str(d) for d in shape)}|"
    return hashlib.sha256(prefix.encode("ascii"))
