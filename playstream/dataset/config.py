"""What a dataset's rows mean: game, board, feature layout. Rows of two configurations never mix.

The configuration is read back from untrusted metadata and its ``key()`` names directories of
the chunk store, so every field is checked here once: identifiers are short and path-safe,
counts are in range, and channel names are unique.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from playstream.dataset.schema import MAX_VALUE_SEATS, V1_VALUE_SEATS
from playstream.errors import ConfigMismatchError, DatasetError

_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BOARD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=,()-]{0,63}")
"""Board types may be parameterised game strings, ``go(board_size=9)``; `DatasetConfig.key`
spells them path-safe (``go.board_size-9``)."""
_KEY_SPELLING = str.maketrans({"(": ".", ")": "", ",": ".", "=": "-"})
MAX_NAME_LEN = 128
MAX_CHANNELS = 65536
MAX_POLICY_SIZE = 1 << 24
MAX_BOARD_SIDE = 4096


def encoder_scope(feature_version: str, history_length: int) -> str:
    """The encoder part of a configuration key: chunk writers with different encoders share
    a store without sharing progress (their keys end differently)."""
    return f"{feature_version}_h{history_length}"


def key_scope(config_key: str) -> str:
    """The encoder scope a configuration key ends with (inverse of `DatasetConfig.key`)."""
    return "_".join(config_key.rsplit("_", 2)[-2:])


@dataclass(frozen=True)
class DatasetConfig:
    game: str
    game_version: str
    board_type: str
    num_players: int
    feature_version: str
    history_length: int
    channels: tuple[str, ...]
    global_names: tuple[str, ...]
    policy_size: int
    height: int
    width: int
    value_seats: int = 0  # values_mp columns; 0 = num_players (format 1 files: 4)
    binary_channels: tuple[bool, ...] = ()  # per channel; () = none known (format 1 files)

    def __post_init__(self) -> None:
        for name in ("game", "game_version", "board_type", "feature_version"):
            value = getattr(self, name)
            pattern = _BOARD if name == "board_type" else _IDENT
            if not isinstance(value, str) or not pattern.fullmatch(value):
                _invalid(name, f"must match {pattern.pattern} (it names files), got {value!r}")
        _check_int("num_players", self.num_players, 1, MAX_VALUE_SEATS)
        _check_int("history_length", self.history_length, 0, 1 << 16)
        _check_int("policy_size", self.policy_size, 1, MAX_POLICY_SIZE)
        _check_int("height", self.height, 1, MAX_BOARD_SIDE)
        _check_int("width", self.width, 1, MAX_BOARD_SIDE)
        # Lists from JSON become tuples: the dataclass is frozen and hashable.
        object.__setattr__(self, "channels", _names("channels", self.channels, minimum=1))
        object.__setattr__(self, "global_names", _names("global_names", self.global_names,
                                                        minimum=0))
        if self.value_seats == 0:
            object.__setattr__(self, "value_seats", self.num_players)
        _check_int("value_seats", self.value_seats, self.num_players, MAX_VALUE_SEATS)
        binary = self.binary_channels
        if isinstance(binary, str) or not isinstance(binary, Sequence) \
                or any(not isinstance(b, bool) for b in binary) \
                or len(binary) not in (0, len(self.channels)):
            _invalid("binary_channels", f"must be {len(self.channels)} booleans (one per "
                                        f"channel) or empty")
        object.__setattr__(self, "binary_channels", tuple(binary))

    def key(self) -> str:
        """Short stable identifier, '<game>-<version>_<board>_<n>p_<features>_h<history>'
        (e.g. 'openspiel-1_go.board_size-9_2p_obs_h0'); safe as a path part."""
        board = self.board_type.translate(_KEY_SPELLING)
        return (f"{self.game}-{self.game_version}_{board}_{self.num_players}p_"
                f"{encoder_scope(self.feature_version, self.history_length)}")

    def to_metadata(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["channels"] = list(self.channels)
        out["global_names"] = list(self.global_names)
        out["binary_channels"] = list(self.binary_channels)
        return out

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> DatasetConfig:
        """The configuration stored in a file's metadata; DatasetError naming a missing or
        invalid key otherwise."""
        values = {}
        old = metadata.get("format_version") == 1
        for f in fields(cls):
            if f.name not in metadata:
                if old and f.name == "value_seats":
                    values[f.name] = V1_VALUE_SEATS
                    continue
                if old and f.name == "binary_channels":
                    continue
                _invalid(f.name, "missing from metadata")
            values[f.name] = metadata[f.name]
        return cls(**values)

    def differing_fields(self, other: DatasetConfig) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name) != getattr(other,
                                                                                       f.name))

    def compatible_with(self, other: DatasetConfig, **context: Any) -> bool:
        """True when rows of both configurations may share a dataset; raises otherwise, so
        that a forgotten check of the result can never let two configurations mix."""
        diff = self.differing_fields(other)
        if diff:
            detail = "; ".join(f"{name}: {getattr(self, name)!r} != {getattr(other, name)!r}"
                               for name in diff)
            raise ConfigMismatchError(
                f"configurations {self.key()} and {other.key()} differ in {detail}",
                fields=",".join(diff), **context)
        return True


def _invalid(name: str, message: str) -> None:
    raise DatasetError(f"config field {name} {message}", array="metadata", check="metadata",
                       field=name)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _invalid(name, f"must be an integer in [{low}, {high}], got {value!r}")


def _names(name: str, value: object, *, minimum: int) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        _invalid(name, f"must be a list of strings, got {type(value).__name__}")
    names: tuple[str, ...] = tuple(value)  # type: ignore[arg-type]
    if not minimum <= len(names) <= MAX_CHANNELS:
        _invalid(name, f"must hold {minimum}..{MAX_CHANNELS} names, got {len(names)}")
    bad = [n for n in names if not isinstance(n, str) or not 0 < len(n) <= MAX_NAME_LEN]
    if bad:
        _invalid(name, f"holds an invalid name {bad[0]!r} (1..{MAX_NAME_LEN} characters)")
    if len(set(names)) != len(names):
        _invalid(name, "holds duplicate names")
    return names
