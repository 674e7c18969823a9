"""Version 2 of the playstream NPZ format: array names, dtypes, bounds and the checksum rule.

Everything the writer, the reader and the validator must agree on lives here, so that a change
of the format is one edit plus a version bump. docs/FORMAT.md is the prose form of this module.
"""
from __future__ import annotations

import hashlib
from typing import Final

import numpy as np

FORMAT_NAME: Final = "playstream-npz"
FORMAT_VERSION: Final = 2
READABLE_FORMAT_VERSIONS: Final = (1, 2)
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
}

NDIM: Final[dict[str, int]] = {
    "features": 4, "globals": 2, "values": 1, "values_mp": 2, "policy_indptr": 1,
    "policy_indices": 1, "policy_values": 1, "game_id": 1, "move_number": 1, "player": 1,
    "num_players": 1, DENSE_POLICY: 2,
}

REQUIRED_METADATA_KEYS: Final = (
    "format", "format_version", "game", "game_version", "board_type", "num_players",
    "feature_version", "history_length", "channels", "global_names", "policy_size", "height",
    "width", "rows", "games", "created_at", "dense_policy", "checksums", "extra",
)
V2_METADATA_KEYS: Final = ("value_seats", "binary_channels")
"""Configuration keys format 2 added (required from version 2 on)."""


def file_arrays(dense_policy: bool) -> tuple[str, ...]:
    """Names of the checksummed arrays a file holds (every member except metadata)."""
    return BATCH_ARRAYS + ((DENSE_POLICY,) if dense_policy else ())


def per_row_arrays(dense_policy: bool) -> tuple[str, ...]:
    """Names of the arrays with exactly one entry per row."""
    return PER_ROW_ARRAYS + ((DENSE_POLICY,) if dense_policy else ())


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
