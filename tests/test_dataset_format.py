"""The NPZ dataset format: writer/reader round trips, metadata, and every validator check on
real files, including hand-made broken ones.

The hand-made files here edit format 1's members (one dense ``features`` array), which every
reader still reads; tests/test_format3.py covers what format 2 stores differently."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from playstream.dataset import (DatasetConfig, NPZDatasetWriter, RowBatch, iter_row_batches,
                                load_npz_dataset, read_metadata, validate_npz_dataset)
from playstream.errors import ConfigMismatchError, DatasetError

CONFIG = DatasetConfig(
    game="connect", game_version="1", board_type="square8", num_players=2,
    feature_version="v2", history_length=3,
    channels=tuple(f"f{i}:plane{i}_rel{i % 2}" for i in range(6)),
    global_names=("g:turn", "g:moves"), policy_size=64, height=8, width=8)
ARRAYS = ("features", "globals", "values", "values_mp", "policy_indptr", "policy_indices",
          "policy_values", "game_id", "move_number", "player", "num_players")


def make_batch(rng: np.random.Generator, n: int, prefix: str = "game-") -> RowBatch:
    lengths = rng.integers(1, 6, n)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    rows = np.repeat(np.arange(n), lengths)
    # Distinct indices per row: a random permutation of 0..63 per row, first `length` kept.
    indices = np.argsort(rng.random((n, 64)), axis=1)
    keep = np.arange(64) < lengths[:, None]
    weights = rng.random(int(indptr[-1])) + 0.05
    values = (weights / np.bincount(rows, weights)[rows]).astype(np.float32)
    return RowBatch(
        features=rng.random((n, 6, 8, 8), dtype=np.float32),
        globals=rng.random((n, 2), dtype=np.float32),
        values=rng.uniform(-1, 1, n).astype(np.float32),
        values_mp=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        policy_indptr=indptr,
        policy_indices=indices[keep].astype(np.int32),
        policy_values=values,
        game_id=np.array([f"{prefix}{i // 5}" for i in range(n)]),
        move_number=(np.arange(n) % 5).astype(np.int32),
        player=(np.arange(n) % 2 + 1).astype(np.int8),
        num_players=np.full(n, 2, np.int8))


def write(path: Path, batches: list[RowBatch], **options: object) -> Path:
    options.setdefault("format_version", 2)
    with NPZDatasetWriter(path, CONFIG, **options) as writer:  # type: ignore[arg-type]
        for b in batches:
            writer.write(b)
    return path


def assert_same_rows(got: RowBatch, want: RowBatch) -> None:
    for name in ARRAYS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape, name
        if name == "game_id":
            assert a.tolist() == b.tolist()
        else:
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name


def checksum(arr: np.ndarray) -> str:
    """The documented rule, written independently of the package."""
    prefix = f"{arr.dtype.str}|{','.join(str(d) for d in arr.shape)}|".encode()
    return hashlib.sha256(prefix + np.ascontiguousarray(arr).tobytes()).hexdigest()


def file_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "metadata"}
        return arrays, json.loads(str(z["metadata"]))


def save_by_hand(path: Path, arrays: dict[str, np.ndarray], metadata: dict) -> Path:
    """np.savez with checksums recomputed, so that only the intended defect is present."""
    metadata = dict(metadata, checksums={k: checksum(v) for k, v in arrays.items()})
    np.savez(path, metadata=np.array(json.dumps(metadata)), **arrays)
    return path


def failed(report: object) -> dict[str, tuple[str | None, int | None]]:
    return {r.name: (r.array, r.row) for r in report.failures  # type: ignore[attr-defined]
            if not r.message.startswith("not run")}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def good(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, RowBatch]:
    batches = [make_batch(rng, 9, "a-"), make_batch(rng, 1, "bb-"), make_batch(rng, 14, "c")]
    return write(tmp_path / "good.npz", batches), RowBatch.concat(batches)


# -- round trips ---------------------------------------------------------------------------
def test_round_trip_is_bit_identical_over_several_writes(good: tuple[Path, RowBatch]) -> None:
    path, want = good
    ds = load_npz_dataset(path)
    assert_same_rows(ds.rows, want)
    assert ds.rows.game_id.dtype == np.dtype("<U4")  # the longest id, "bb-0"
    assert ds.config == CONFIG and ds.policy is None
    assert_same_rows(load_npz_dataset(path, mmap=True).rows, want)
    streamed = list(iter_row_batches(path, 4))
    assert [len(b) for b in streamed] == [4] * 6
    assert_same_rows(RowBatch.concat(streamed), want)
    assert validate_npz_dataset(path).ok


def test_output_loads_with_plain_numpy_without_pickle(good: tuple[Path, RowBatch]) -> None:
    path, want = good
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(ARRAYS + ("metadata",))
        assert np.array_equal(z["features"], want.features)
        assert z["policy_indptr"].dtype == np.int64 and z["player"].dtype == np.int8
        assert z["metadata"].shape == () and z["metadata"].dtype.kind == "U"


def test_zero_rows_is_a_valid_dataset(tmp_path: Path, rng: np.random.Generator) -> None:
    assert read_metadata(write(tmp_path / "none.npz", []))["rows"] == 0
    path = write(tmp_path / "empty.npz", [make_batch(rng, 3).take(np.array([], np.int64))])
    ds = load_npz_dataset(path)
    assert len(ds) == 0 and ds.rows.features.shape == (0, 6, 8, 8)
    assert ds.rows.policy_indptr.tolist() == [0] and ds.rows.game_id.dtype == np.dtype("<U1")
    assert ds.metadata["rows"] == 0 and ds.metadata["games"] == 0
    assert validate_npz_dataset(path).ok
    assert list(iter_row_batches(path, 10)) == []


def test_dense_policy_agrees_with_csr(tmp_path: Path, rng: np.random.Generator) -> None:
    batches = [make_batch(rng, 5), make_batch(rng, 7)]
    path = write(tmp_path / "dense.npz", batches, dense_policy=True)
    ds = load_npz_dataset(path)
    want = RowBatch.concat(batches)
    assert ds.policy is not None and ds.policy.shape == (12, 64)
    for r in range(12):
        lo, hi = want.policy_indptr[r], want.policy_indptr[r + 1]
        row = np.zeros(64, np.float32)
        row[want.policy_indices[lo:hi]] = want.policy_values[lo:hi]
        assert np.array_equal(ds.policy[r], row)
    assert ds.metadata["dense_policy"] is True and validate_npz_dataset(path).ok


def test_compressed_round_trip_and_mmap_refusal(good: tuple[Path, RowBatch],
                                                tmp_path: Path) -> None:
    _, want = good
    path = write(tmp_path / "z.npz", [want], compress=True)
    with zipfile.ZipFile(path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    assert_same_rows(load_npz_dataset(path).rows, want)
    assert_same_rows(RowBatch.concat(list(iter_row_batches(path, 5))), want)
    assert validate_npz_dataset(path).ok
    with pytest.raises(DatasetError) as err:
        load_npz_dataset(path, mmap=True)
    assert err.value.check == "mmap" and err.value.array == "features"


def test_metadata_content(good: tuple[Path, RowBatch]) -> None:
    path, want = good
    meta = read_metadata(path)
    arrays, _ = file_arrays(path)
    assert meta["format"] == "playstream-npz" and meta["format_version"] == 2
    assert {k: meta[k] for k in ("game", "game_version", "board_type", "num_players",
                                 "feature_version", "history_length", "policy_size",
                                 "height", "width")} == {
        "game": "connect", "game_version": "1", "board_type": "square8", "num_players": 2,
        "feature_version": "v2", "history_length": 3, "policy_size": 64, "height": 8,
        "width": 8}
    assert meta["channels"] == list(CONFIG.channels) and meta["global_names"] == ["g:turn",
                                                                                  "g:moves"]
    assert meta["rows"] == 24 and meta["dense_policy"] is False
    assert meta["games"] == len(set(want.game_id.tolist())) == 2 + 1 + 3
    assert meta["created_at"].endswith("+00:00") and meta["extra"] == {}
    assert meta["checksums"] == {k: checksum(v) for k, v in arrays.items()}
    assert set(meta["checksums"]) == set(ARRAYS)


def test_games_counts_ids_spanning_writes_of_different_widths(
        tmp_path: Path, rng: np.random.Generator) -> None:
    a, b = make_batch(rng, 4), make_batch(rng, 3)
    a = RowBatch(**{**a.__dict__, "game_id": np.array(["g1", "g1", "g2", "g2"])})
    b = RowBatch(**{**b.__dict__, "game_id": np.array(["g2", "a-much-longer-id", "g1"])})
    ds = load_npz_dataset(write(tmp_path / "g.npz", [a, b]))
    assert ds.metadata["games"] == 3 and ds.rows.game_id.dtype == np.dtype("<U16")
    assert ds.rows.game_id.tolist() == ["g1", "g1", "g2", "g2", "g2", "a-much-longer-id", "g1"]


def test_extra_metadata_round_trips_and_must_be_json(tmp_path: Path) -> None:
    extra = {"source": "selfplay.db", "offsets": [0, 17], "game_ids": ["g1", "g9"]}
    assert read_metadata(write(tmp_path / "x.npz", [], extra_metadata=extra))["extra"] == extra
    with pytest.raises(DatasetError) as err:
        NPZDatasetWriter(tmp_path / "y.npz", CONFIG, extra_metadata={"bad": float("nan")})
    assert err.value.check == "metadata" and os.listdir(tmp_path) == ["x.npz"]


# -- the writer ----------------------------------------------------------------------------
def test_failed_write_leaves_existing_file_untouched(good: tuple[Path, RowBatch],
                                                     rng: np.random.Generator) -> None:
    path, _ = good
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="producer died"):
        with NPZDatasetWriter(path, CONFIG) as writer:
            writer.write(make_batch(rng, 3))
            raise RuntimeError("producer died")
    bad = make_batch(rng, 4)
    bad.features[2, 1, 0, 0] = np.nan
    with pytest.raises(DatasetError) as err:
        with NPZDatasetWriter(path, CONFIG) as writer:
            writer.write(make_batch(rng, 6))
            writer.write(bad)
    assert (err.value.check, err.value.array, err.value.row) == ("finite", "features", 8)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_failed_publish_leaves_existing_file_untouched(
        good: tuple[Path, RowBatch], rng: np.random.Generator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = good
    before = path.read_bytes()
    writer = NPZDatasetWriter(path, CONFIG)
    writer.write(make_batch(rng, 3))

    def no_space(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match="No space"):
        writer.close()
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(path.parent) == [path.name]
    with pytest.raises(DatasetError, match="close after abort"):
        writer.close()
    with pytest.raises(DatasetError, match="write after the writer was aborted"):
        writer.write(make_batch(rng, 1))


def test_writer_rejects_rows_that_break_the_format(tmp_path: Path,
                                                   rng: np.random.Generator) -> None:
    def rejected(batch: RowBatch) -> tuple[str | None, str | None, int | None]:
        with pytest.raises(DatasetError) as err:
            with NPZDatasetWriter(tmp_path / "w.npz", CONFIG) as writer:
                writer.write(batch)
        return err.value.check, err.value.array, err.value.row

    b = make_batch(rng, 6)
    b.player[4] = 3
    assert rejected(b) == ("row_fields", "player", 4)
    b = make_batch(rng, 6)
    b.values[5] = 1.5
    assert rejected(b) == ("value_range", "values", 5)
    b = make_batch(rng, 6)
    b.policy_indices[b.policy_indptr[3]] = 64
    assert rejected(b) == ("policy", "policy_indices", 3)
    b = make_batch(rng, 6)
    b = RowBatch(**{**b.__dict__, "globals": np.zeros((6, 3), np.float32)})
    assert rejected(b) == ("shapes", "globals", None)
    assert os.listdir(tmp_path) == []


def test_writer_memory_is_bounded(tmp_path: Path, rng: np.random.Generator) -> None:
    batch = make_batch(rng, 500)  # 0.8 MB of rows, written 40 times: 32 MB of data
    tracemalloc.start()
    try:
        with NPZDatasetWriter(tmp_path / "big.npz", CONFIG) as writer:
            for _ in range(40):
                writer.write(batch)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        report = validate_npz_dataset(tmp_path / "big.npz", block_bytes=1 << 20)
        _, validate_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok and (tmp_path / "big.npz").stat().st_size > 30_000_000
    assert write_peak < 24_000_000 and validate_peak < 12_000_000, (write_peak, validate_peak)


# -- RowBatch and DatasetConfig ------------------------------------------------------------
def test_take_reslices_policy_and_concat_inverts_it(rng: np.random.Generator) -> None:
    b = make_batch(rng, 10)
    index = np.array([7, 0, 7, 3])
    got = b.take(index)
    assert np.array_equal(got.dense_policy(64), b.dense_policy(64)[index])
    assert np.array_equal(got.features, b.features[index]) and got.game_id.tolist() == \
        b.game_id[index].tolist()
    assert got.policy_indptr[0] == 0 and got.policy_indptr[-1] == got.nnz
    assert_same_rows(RowBatch.concat([b.take(np.arange(4)), b.take(np.arange(4, 10))]), b)
    assert len(b.take(np.array([], np.int64))) == 0
    with pytest.raises(DatasetError) as err:
        b.take(np.array([1, 10]))
    assert err.value.row == 1 and err.value.check == "arguments"


def test_rowbatch_rejects_bad_structure(rng: np.random.Generator) -> None:
    b = make_batch(rng, 4)
    with pytest.raises(DatasetError) as err:
        RowBatch(**{**b.__dict__, "values": b.values.astype(np.float64)})
    assert (err.value.check, err.value.array) == ("dtypes", "values")
    with pytest.raises(DatasetError) as err:
        RowBatch(**{**b.__dict__, "policy_indptr": b.policy_indptr[[0, 2, 1, 3, 4]]})
    assert (err.value.check, err.value.array, err.value.row) == ("csr", "policy_indptr", 1)
    with pytest.raises(DatasetError) as err:
        RowBatch(**{**b.__dict__, "game_id": np.array(["x" * 129] * 4)})
    assert err.value.array == "game_id"


def test_config_key_and_mismatch() -> None:
    assert CONFIG.key() == "connect-1_square8_2p_v2_h3"
    other = DatasetConfig(**{**CONFIG.to_metadata(), "feature_version": "v3", "height": 9})
    assert CONFIG.compatible_with(DatasetConfig.from_metadata(CONFIG.to_metadata()))
    with pytest.raises(ConfigMismatchError) as err:
        CONFIG.compatible_with(other)
    assert err.value.context["fields"] == "feature_version,height"
    assert "'v2' != 'v3'" in str(err.value)
    with pytest.raises(DatasetError) as bad:
        DatasetConfig(**{**CONFIG.to_metadata(), "board_type": "../etc"})
    assert bad.value.context["field"] == "board_type"


# -- the validator on broken files ---------------------------------------------------------
def test_truncated_file_fails_zip_check(good: tuple[Path, RowBatch], tmp_path: Path) -> None:
    data = good[0].read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    report = validate_npz_dataset(cut)
    assert report.results[0].name == "zip" and not report.results[0].ok
    assert "truncated" in report.results[0].message
    assert [r.name for r in report.results[1:]] == [r.name for r in
                                                    validate_npz_dataset(good[0]).results][1:]
    assert all(r.message == "not run: needs zip to pass" for r in report.results[1:])
    with pytest.raises(DatasetError) as err:
        report.raise_for_failures()
    assert err.value.check == "zip" and err.value.path == str(cut)
    not_zip = tmp_path / "text.npz"
    not_zip.write_text("hello")
    assert failed(validate_npz_dataset(not_zip)) == {"zip": (None, None)}


def _data_offset(path: Path, member: str) -> int:
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = struct.unpack("<4s2B4HL2L2H", f.read(30))
        f.seek(info.header_offset + 30 + local[10] + local[11])
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


def test_flipped_byte_fails_checksum(good: tuple[Path, RowBatch]) -> None:
    path, _ = good
    offset = _data_offset(path, "features.npy") + 4 * 6 * 64 * 11  # first byte of row 11
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01  # lowest mantissa bit: still a finite value in range
    path.write_bytes(bytes(data))
    assert failed(validate_npz_dataset(path)) == {"checksums": ("features", None)}
    with pytest.raises(DatasetError) as err:
        load_npz_dataset(path)
    assert (err.value.check, err.value.array) == ("checksums", "features")
    with pytest.raises(DatasetError):
        list(iter_row_batches(path, 5))
    assert len(load_npz_dataset(path, verify=False)) == 24


def test_edited_metadata_fails_its_crc(good: tuple[Path, RowBatch]) -> None:
    path, _ = good
    data = path.read_bytes()
    at = data.find("plane3".encode("utf-32-le"))  # metadata text is stored as UCS-4
    path.write_bytes(data[:at] + "plane4".encode("utf-32-le") + data[at + 24:])
    report = validate_npz_dataset(path)
    assert failed(report) == {"metadata": ("metadata", None)}
    assert "CRC-32" in report.result("metadata").message


def test_random_damage_never_raises_and_ok_means_numpy_loads(
        tmp_path: Path, rng: np.random.Generator) -> None:
    sources = [write(tmp_path / "s.npz", [make_batch(rng, 12)], dense_policy=True),
               write(tmp_path / "c.npz", [make_batch(rng, 12)], compress=True)]
    damaged = tmp_path / "damaged.npz"
    for i in range(120):
        data = bytearray(sources[i % 2].read_bytes())
        if i % 3 == 0:
            data = data[: rng.integers(len(data))]
        else:
            for pos in rng.integers(len(data), size=2):
                data[pos] ^= int(rng.integers(1, 256))
        damaged.write_bytes(bytes(data))
        report = validate_npz_dataset(damaged, block_bytes=5000)
        if report.ok:  # only zip bookkeeping (times, attributes) was hit
            with np.load(damaged, allow_pickle=False) as z:  # raises on a bad CRC
                loaded = {k: z[k] for k in z.files}
            assert loaded["features"].shape == (12, 6, 8, 8)
        else:
            with pytest.raises(DatasetError):
                load_npz_dataset(damaged)


def _broken(tmp_path: Path, good: tuple[Path, RowBatch], edit: object) -> Path:
    arrays, meta = file_arrays(good[0])
    edit(arrays, meta)  # type: ignore[operator]
    return save_by_hand(tmp_path / "broken.npz", arrays, meta)


def test_nan_in_features(tmp_path: Path, good: tuple[Path, RowBatch]) -> None:
    path = _broken(tmp_path, good, lambda a, m: a["features"].__setitem__((17, 2, 3, 4),
                                                                          np.inf))
    report = validate_npz_dataset(path, block_bytes=8192)  # 3 rows per block
    assert failed(report) == {"finite": ("features", 17)}
    with pytest.raises(DatasetError) as err:
        report.raise_for_failures()
    assert (err.value.array, err.value.row, err.value.check) == ("features", 17, "finite")


def test_policy_row_not_summing_to_one(tmp_path: Path, good: tuple[Path, RowBatch]) -> None:
    def edit(a: dict, m: dict) -> None:
        a["policy_values"][a["policy_indptr"][13]] += 0.01
    report = validate_npz_dataset(_broken(tmp_path, good, edit), block_bytes=8192)
    assert failed(report) == {"policy": ("policy_values", 13)}
    assert "sums to 1.01" in report.result("policy").message


def test_policy_index_out_of_range(tmp_path: Path, good: tuple[Path, RowBatch]) -> None:
    def edit(a: dict, m: dict) -> None:
        a["policy_indices"][a["policy_indptr"][22] + 0] = 64
    report = validate_npz_dataset(_broken(tmp_path, good, edit), block_bytes=8192)
    assert failed(report) == {"policy": ("policy_indices", 22)}
    assert "index 64 outside 0..63" in report.result("policy").message


def test_dense_policy_disagreeing(tmp_path: Path, rng: np.random.Generator) -> None:
    src = write(tmp_path / "d.npz", [make_batch(rng, 8)], dense_policy=True)
    arrays, meta = file_arrays(src)
    arrays["policy"][5, 0] += 0.5
    report = validate_npz_dataset(save_by_hand(tmp_path / "e.npz", arrays, meta))
    assert failed(report) == {"dense_policy": ("policy", 5)}


def test_row_counts_disagree(tmp_path: Path, good: tuple[Path, RowBatch]) -> None:
    path = _broken(tmp_path, good, lambda a, m: a.__setitem__("move_number",
                                                              a["move_number"][:-1]))
    report = validate_npz_dataset(path)
    assert failed(report) == {"shapes": ("move_number", None)}
    assert report.result("shapes").message == "has 23 rows, values has 24"
    with pytest.raises(DatasetError) as err:
        load_npz_dataset(path)
    assert (err.value.check, err.value.array) == ("shapes", "move_number")


def test_value_out_of_range(tmp_path: Path, good: tuple[Path, RowBatch]) -> None:
    path = _broken(tmp_path, good, lambda a, m: a["values_mp"].__setitem__((9, 1), -1.25))
    assert failed(validate_npz_dataset(path)) == {"value_range": ("values_mp", 9)}


def _mark(path: str) -> None:
    Path(path).write_text("unpickled")


class _Payload:
    """Unpickling this object runs _mark: proof that something unpickled the file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _mark, (self.marker,)


def test_pickled_object_array_fails_without_being_unpickled(
        tmp_path: Path, good: tuple[Path, RowBatch]) -> None:
    marker = tmp_path / "marker"
    arrays, meta = file_arrays(good[0])
    arrays["game_id"] = np.array([_Payload(str(marker))] * 24, dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, metadata=np.array(json.dumps(meta)), **arrays)  # pickles game_id
    pickle.loads(pickle.dumps(_Payload(str(tmp_path / "probe"))))  # the payload does fire
    assert (tmp_path / "probe").exists()
    report = validate_npz_dataset(path)
    assert failed(report) == {"no_pickle": ("game_id", None)}
    with pytest.raises(DatasetError) as err:
        load_npz_dataset(path)
    assert err.value.check == "no_pickle"
    assert not marker.exists()


def test_missing_metadata_key(tmp_path: Path, good: tuple[Path, RowBatch]) -> None:
    path = _broken(tmp_path, good, lambda a, m: m.pop("history_length"))
    report = validate_npz_dataset(path)
    assert failed(report) == {"metadata": ("metadata", None)}
    assert report.result("metadata").message == "required key 'history_length' is missing"
    assert read_metadata(path)["game"] == "connect"  # the cheap read does not judge keys


def test_decreasing_indptr_stops_the_pass(tmp_path: Path, good: tuple[Path, RowBatch]) -> None:
    path = _broken(tmp_path, good, lambda a, m: a["policy_indptr"].__setitem__(
        7, a["policy_indptr"][9]))
    report = validate_npz_dataset(path, block_bytes=8192)
    assert failed(report) == {"csr": ("policy_indptr", 7)}
    assert report.result("checksums").message.startswith("not run to the end")


def test_read_metadata_refuses_foreign_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", metadata=np.array(json.dumps({"format": "x"})))
    with pytest.raises(DatasetError) as err:
        read_metadata(tmp_path / "other.npz")
    assert err.value.check == "metadata" and "'x'" in err.value.message
    np.savez(tmp_path / "none.npz", a=np.zeros(3))
    with pytest.raises(DatasetError) as err:
        read_metadata(tmp_path / "none.npz")
    assert (err.value.check, err.value.array) == ("members", "metadata")


@pytest.mark.parametrize("array", [
    np.zeros((3, 4), "<f4"), np.zeros(5, "<i8"), np.array("text"), np.zeros((2, 3, 4), ">i2"),
    np.zeros((0,), np.uint8), np.array(["ab", "c"]), np.asfortranarray(np.zeros((3, 4))),
    np.zeros((1, 0, 19, 19), "<f4")], ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_header_fast_path_agrees_with_numpy(tmp_path: Path, array: np.ndarray) -> None:
    """Headers numpy writes are parsed without numpy's literal parser; the result must be
    what numpy's parser gives, for every layout (0-d, empty, 1-d, Fortran, strings)."""
    from playstream.dataset.archive import Archive, _canonical_header, _numpy_header
    path = tmp_path / "one.npz"
    np.savez(path, a=array)
    with Archive(path) as archive, archive.zip.open(archive.infos["a"]) as fp:
        fast = _canonical_header(fp)
        member = archive.read_header("a")
    with zipfile.ZipFile(path) as zf, zf.open("a.npy") as fp:
        assert fast is not None and fast == _numpy_header(fp)
    assert (member.shape, member.dtype, member.fortran_order) == (
        array.shape, array.dtype, array.flags.f_contiguous and not array.flags.c_contiguous)


def test_non_canonical_header_goes_to_numpy_and_garbage_is_named(tmp_path: Path) -> None:
    """A header laid out differently (key order, spacing) is still read, by numpy's parser;
    a header that is no literal fails the npy_headers check naming the array."""
    from playstream.dataset.archive import Archive

    def member(text: bytes) -> bytes:
        text = text + b" " * (-(len(text) + 11) % 64) + b"\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + b"\0" * 24

    path = tmp_path / "odd.npz"
    odd = member(b"{'shape': (6,), 'fortran_order': False, 'descr': '<i4'}")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.npy", odd)
        zf.writestr("b.npy", member(b"{'descr': __import__('os'), 'shape': (6,)}"))
    with Archive(path) as archive:
        a = archive.read_header("a")
        assert (a.shape, a.dtype, a.header_bytes) == ((6,), np.dtype("<i4"), len(odd) - 24)
        with pytest.raises(DatasetError) as err:
            archive.read_header("b")
    assert (err.value.check, err.value.array) == ("npy_headers", "b")
