"""Format 3: bit-packed binary channels, constant channels once per file, the rest float32;
read back as exactly the dense planes that were written, by the package and by plain numpy."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from playstream.dataset import (NPZDatasetWriter, RowBatch, iter_row_batches, load_npz_dataset,
                                open_rows, read_metadata, validate_npz_dataset)
from playstream.dataset.packing import FeatureStorage, Planes
from playstream.errors import DatasetError
from test_dataset_format import (CONFIG, _data_offset, assert_same_rows, checksum, failed,
                                 make_batch, save_by_hand)

# Channels of CONFIG (6 on 8x8): 0, 2 binary per row; 1 a constant mask; 3, 4 float;
# 5 binary but not constant.
MASK = (np.arange(64).reshape(8, 8) % 3 == 0).astype(np.float32)


def planes(rng: np.random.Generator, n: int) -> np.ndarray:
    f = rng.random((n, 6, 8, 8), dtype=np.float32)
    f[:, [0, 2, 5]] = rng.integers(0, 2, (n, 3, 8, 8)).astype(np.float32)
    f[:, 1] = MASK
    return f


def batch_with(rng: np.random.Generator, n: int, prefix: str) -> RowBatch:
    b = make_batch(rng, n, prefix)
    fields = {name: getattr(b, name) for name in b.__dataclass_fields__}
    fields["features"] = planes(rng, n)
    return RowBatch(**fields)


def write(path: Path, batches: list[RowBatch], **options: object) -> Path:
    with NPZDatasetWriter(path, CONFIG, **options) as writer:  # type: ignore[arg-type]
        for b in batches:
            writer.write(b)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(99)


@pytest.fixture
def packed(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, RowBatch]:
    batches = [batch_with(rng, 7, "a-"), batch_with(rng, 12, "b-"), batch_with(rng, 1, "c-")]
    return write(tmp_path / "packed.npz", batches), RowBatch.concat(batches)


def test_round_trip_is_bit_identical_by_every_reader(packed: tuple[Path, RowBatch]) -> None:
    path, want = packed
    assert_same_rows(load_npz_dataset(path).rows, want)
    assert_same_rows(load_npz_dataset(path, mmap=True).rows, want)
    assert_same_rows(RowBatch.concat(list(iter_row_batches(path, 3))), want)
    assert validate_npz_dataset(path).ok


def test_channels_are_stored_by_what_they_hold(packed: tuple[Path, RowBatch]) -> None:
    meta = read_metadata(packed[0])
    assert meta["format_version"] == 3
    assert meta["feature_storage"] == {"bits": [0, 2, 5], "float": [3, 4], "constant": [1]}


def test_plain_numpy_rebuilds_the_planes_from_the_documented_layout(
        packed: tuple[Path, RowBatch]) -> None:
    """docs/FORMAT.md's recipe, written here without the package."""
    path, want = packed
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["metadata"]))
        storage = meta["feature_storage"]
        bits, floats, constant = z["features_bits"], z["features_float"], z["features_constant"]
        checksums_ok = all(checksum(z[k]) == v for k, v in meta["checksums"].items())
    n, h, w = bits.shape[0], meta["height"], meta["width"]
    assert bits.dtype == np.uint8 and bits.shape == (n, 3, 8)  # 64 cells in 8 bytes
    dense = np.zeros((n, len(meta["channels"]), h, w), np.float32)
    dense[:, storage["bits"]] = np.unpackbits(bits, axis=-1, bitorder="little",
                                              count=h * w).reshape(n, -1, h, w)
    dense[:, storage["float"]] = floats
    dense[:, storage["constant"]] = constant
    assert checksums_ok
    assert dense.tobytes() == want.features.tobytes()


def test_a_channel_that_stops_being_binary_in_a_later_write_is_stored_as_float(
        tmp_path: Path, rng: np.random.Generator) -> None:
    first, second = batch_with(rng, 5, "a-"), batch_with(rng, 5, "b-")
    second.features[3, 0, 2, 2] = 0.5  # channel 0 was binary in the first write
    second.features[4, 1, 0, 0] = 1 - MASK[0, 0]  # channel 1 is no longer constant
    path = write(tmp_path / "mixed.npz", [first, second])
    storage = read_metadata(path)["feature_storage"]
    assert storage == {"bits": [1, 2, 5], "float": [0, 3, 4], "constant": []}
    assert_same_rows(load_npz_dataset(path).rows, RowBatch.concat([first, second]))


def test_binary_planes_take_a_bit_per_cell(tmp_path: Path, rng: np.random.Generator) -> None:
    rows = [batch_with(rng, 200, "g-")]
    for b in rows:
        b.features[:, 3:5] = 1.0  # only bits and constants now
    compact = write(tmp_path / "compact.npz", rows)
    dense = write(tmp_path / "dense.npz", rows, format_version=2)
    with zipfile.ZipFile(compact) as z:
        names = {i.filename: i.file_size for i in z.infolist()}
    assert names["features_float.npy"] < 200  # header only: no float channel left
    assert names["features_bits.npy"] - 128 <= 200 * 3 * 8
    with zipfile.ZipFile(dense) as z:
        assert z.getinfo("features.npy").file_size >= 200 * 6 * 64 * 4
    assert compact.stat().st_size < dense.stat().st_size / 4


def test_zero_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "none.npz", [])
    assert read_metadata(path)["rows"] == 0 and validate_npz_dataset(path).ok
    assert len(load_npz_dataset(path).rows) == 0


def test_dense_planes_are_still_written_on_request(tmp_path: Path, rng: np.random.Generator) -> None:
    b = batch_with(rng, 4, "a-")
    path = write(tmp_path / "dense.npz", [b], format_version=2)
    with np.load(path, allow_pickle=False) as z:
        assert "features" in z.files and "features_bits" not in z.files
        assert z["features"].tobytes() == b.features.tobytes()
    assert read_metadata(path)["format_version"] == 2
    for unwritable in (1, 4):  # format 1 reads, but its values_mp layout is not written any more
        with pytest.raises(DatasetError, match=f"format version {unwritable}"):
            NPZDatasetWriter(tmp_path / "x.npz", CONFIG, format_version=unwritable)


def _arrays_and_metadata(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "metadata"}, json.loads(str(z["metadata"]))


def test_a_storage_that_misses_a_channel_fails_metadata(
        tmp_path: Path, packed: tuple[Path, RowBatch]) -> None:
    arrays, meta = _arrays_and_metadata(packed[0])
    meta["feature_storage"]["float"] = [3]  # channel 4 is stored but not named
    report = validate_npz_dataset(save_by_hand(tmp_path / "bad.npz", arrays, meta))
    assert failed(report) == {"metadata": ("metadata", None)}
    assert "channels exactly once" in report.result("metadata").message


def test_bits_of_the_wrong_width_fail_metadata(tmp_path: Path,
                                               packed: tuple[Path, RowBatch]) -> None:
    arrays, meta = _arrays_and_metadata(packed[0])
    arrays["features_bits"] = arrays["features_bits"][:, :, :7]
    report = validate_npz_dataset(save_by_hand(tmp_path / "bad.npz", arrays, meta))
    assert failed(report) == {"metadata": ("features_bits", None)}


def test_members_of_both_formats_at_once_are_refused(tmp_path: Path,
                                                     packed: tuple[Path, RowBatch]) -> None:
    arrays, meta = _arrays_and_metadata(packed[0])
    arrays["features"] = np.zeros((20, 6, 8, 8), np.float32)
    report = validate_npz_dataset(save_by_hand(tmp_path / "bad.npz", arrays, meta))
    assert failed(report) == {"members": ("features_bits", None)}


def test_a_flipped_bit_fails_the_checksum(tmp_path: Path, rng: np.random.Generator) -> None:
    # Big enough that reading the .npy header does not read the member to its end (zipfile
    # would then report its CRC as a header problem).
    path = write(tmp_path / "big.npz", [batch_with(rng, 600, "a-")])
    offset = _data_offset(path, "features_bits.npy") + 3 * 8 * 11  # a bit of row 11
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    assert failed(validate_npz_dataset(path)) == {"checksums": ("features_bits", None)}
    with pytest.raises(DatasetError) as err:
        load_npz_dataset(path)
    assert (err.value.check, err.value.array) == ("checksums", "features_bits")


@pytest.mark.parametrize("format_version", [3, 2])
def test_a_range_writes_chosen_rows_moved_into_a_buffer(
        tmp_path: Path, packed: tuple[Path, RowBatch], rng: np.random.Generator,
        format_version: int) -> None:
    """What the training loader does per batch: some rows of a range (any order, repeats),
    cells and channels permuted, written into a slice of a bigger buffer; held against plain
    fancy indexing of the dense planes that were written. Every kind of channel (bits, float,
    constant) lands on every kind."""
    path, want = packed
    if format_version == 2:
        path = write(tmp_path / "dense.npz", [want], format_version=2)
    assert read_metadata(path)["format_version"] == format_version
    dense = want.features.reshape(len(want), 6, 64)
    with open_rows(path) as reader:
        part = reader.read_range(2, 17)
        assert len(part) == 15 and part.plane_shape == (6, 8, 8)
        for trial in range(6):
            rows = rng.integers(0, 15, size=9)
            cells = None if trial % 3 == 0 else rng.permutation(64)
            channels = None if trial % 2 == 0 else rng.permutation(6)
            expect = dense[2:17][rows]
            if channels is not None:
                expect = expect[:, channels]
            if cells is not None:
                expect = expect[:, :, cells]
            out = np.full((12, 6, 64), np.nan, np.float32)
            part.gather_features(out[2:11], rows, cells, channels)
            np.testing.assert_array_equal(out[2:11], expect)
            assert np.isnan(out[:2]).all() and np.isnan(out[11:]).all()
        with pytest.raises(DatasetError, match="C-contiguous"):
            part.gather_features(np.empty((9, 64, 6), np.float32).transpose(0, 2, 1),
                                 rows)


def test_nan_in_packed_planes_is_found_where_the_dense_rows_show_it(
        tmp_path: Path, packed: tuple[Path, RowBatch]) -> None:
    """The validator checks format 3's planes as stored: a NaN in a float channel at its row,
    in a constant plane at row 0 (every row holds it)."""
    arrays, meta = _arrays_and_metadata(packed[0])
    arrays["features_float"][13, 1, 2, 3] = np.nan
    report = validate_npz_dataset(save_by_hand(tmp_path / "float.npz", arrays, meta))
    assert failed(report) == {"finite": ("features", 13)}
    arrays["features_constant"][0, 4, 4] = np.inf
    report = validate_npz_dataset(save_by_hand(tmp_path / "constant.npz", arrays, meta))
    assert failed(report) == {"finite": ("features", 0)}


def test_a_writer_with_fixed_planes_stores_them_so_and_refuses_what_they_cannot_hold(
        tmp_path: Path, rng: np.random.Generator) -> None:
    planes = Planes(FeatureStorage(bits=(0, 2, 5, 1), floats=(3, 4), constant=()),
                    np.zeros((0, 8, 8), np.float32))
    rows = [batch_with(rng, 6, "a-"), batch_with(rng, 3, "b-")]
    path = write(tmp_path / "fixed.npz", rows, planes=planes)
    # Channel 1 is the same mask in every row but stays bits, as the planes say.
    assert read_metadata(path)["feature_storage"] == {"bits": [0, 2, 5, 1], "float": [3, 4],
                                                      "constant": []}
    assert_same_rows(load_npz_dataset(path).rows, RowBatch.concat(rows))
    assert validate_npz_dataset(path).ok
    half, nan = batch_with(rng, 4, "c-"), batch_with(rng, 4, "d-")
    half.features[2, 5, 0, 0] = 0.5
    nan.features[3, 4, 1, 1] = np.nan
    writer = NPZDatasetWriter(tmp_path / "refused.npz", CONFIG, planes=planes)
    writer.write(rows[0])
    with pytest.raises(DatasetError, match="other than 0 and 1") as err:
        writer.write(half)
    assert err.value.check == "packing"
    with pytest.raises(DatasetError) as err:
        writer.write(nan)
    assert (err.value.check, err.value.array, err.value.row) == ("finite", "features", 9)
    writer.write(rows[1])  # refused rows leave nothing behind
    writer.close()
    assert_same_rows(load_npz_dataset(tmp_path / "refused.npz").rows, RowBatch.concat(rows))


@pytest.mark.parametrize("format_version", [3, 2])
def test_a_reader_reads_a_range_as_dense_rows(tmp_path: Path, packed: tuple[Path, RowBatch],
                                              format_version: int) -> None:
    path, want = packed
    if format_version == 2:
        path = write(tmp_path / "dense.npz", [want], format_version=2)
    with open_rows(path) as reader:
        assert_same_rows(reader.read(3, 11), want.take(np.arange(3, 11)))

