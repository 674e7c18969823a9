"""Files and records written before contract 2 still read: NPZ format 1 (values_mp with 4
columns, no value_seats / binary_channels) and record schema 1."""
from __future__ import annotations

import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from playstream.dataset import load_npz_dataset, validate_npz_dataset
from playstream.dataset.schema import BATCH_ARRAYS, checksum_hasher
from playstream.records import validate_record
from playstream.selfplay import generate_records


def write_format1(path: Path) -> dict[str, np.ndarray]:
    """A format-1 file as the previous writer laid it out: 2 players, 4 seat slots."""
    n = 3
    channels = [f"f0:stones_rel{r}" for r in range(4)] + ["f0:empty", "f0:on_board"]
    arrays = {
        "features": np.zeros((n, 6, 8, 8), "<f4"), "globals": np.zeros((n, 0), "<f4"),
        "values": np.array([1, -1, 1], "<f4"),
        "values_mp": np.array([[1, -1, 0, 0]] * n, "<f4"),
        "policy_indptr": np.arange(n + 1, dtype="<i8"),
        "policy_indices": np.array([3, 4, 5], "<i4"), "policy_values": np.ones(n, "<f4"),
        "game_id": np.array(["g1"] * n), "move_number": np.arange(n, dtype="<i4"),
        "player": np.array([1, 2, 1], "i1"), "num_players": np.full(n, 2, "i1")}
    checksums = {}
    for name in BATCH_ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h = checksum_hasher(a.dtype, a.shape)
        h.update(a.tobytes())
        checksums[name] = h.hexdigest()
    meta = {"format": "playstream-npz", "format_version": 1, "game": "connect",
            "game_version": "1", "board_type": "square8", "num_players": 2,
            "feature_version": "v1", "history_length": 0, "channels": channels,
            "global_names": [], "policy_size": 64, "height": 8, "width": 8, "rows": n,
            "games": 1, "created_at": "2026-11-01T00:00:00+00:00", "dense_policy": False,
            "checksums": checksums, "extra": {}}
    with zipfile.ZipFile(path, "w") as zf:
        for name in BATCH_ARRAYS:
            with zf.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, arrays[name], allow_pickle=False)
        with zf.open("metadata.npy", "w") as member:
            np.lib.format.write_array(member, np.array(json.dumps(meta)), allow_pickle=False)
    return arrays


def test_a_format_1_dataset_still_loads_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    arrays = write_format1(path)
    result = validate_npz_dataset(path)
    assert result.ok, result
    data = load_npz_dataset(path)
    assert data.config.value_seats == 4 and data.config.binary_channels == ()
    np.testing.assert_array_equal(data.rows.values_mp, arrays["values_mp"])


def test_a_schema_1_record_still_validates() -> None:
    record = next(generate_records(board_type="square8", num_players=2, agent="random",
                                   seed=1, count=1, node="n"))
    data = json.loads(record.to_json_line())
    assert data["schema_version"] == 2
    old = {k: v for k, v in data.items() if k != "returns"} | {"schema_version": 1}
    parsed, replay = validate_record(old)
    assert parsed.schema_version == 1 and replay.outcome is not None
    assert datetime.now(timezone.utc) >= parsed.finished_at
