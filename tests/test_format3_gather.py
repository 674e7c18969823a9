"""The loader's gather of one batch from several ranges (`gather_ranges`): packed ranges stored
alike are joined and moved for the whole batch at once, any other mix range by range; both
must equal each row's dense planes moved on their own, channel permutations included (no
shipped game permutes channels yet, so the loader tests do not reach that path)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from playstream.dataset import open_rows
from playstream.dataset.rowrange import gather_ranges
from test_format3 import batch_with, write

CELLS = 64  # CONFIG's 8x8 board
K = 5


def tables(rng: np.random.Generator, permute_channels: bool
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Random cell (and channel) permutations, transform 0 the identity."""
    cells = np.stack([np.arange(CELLS)] + [rng.permutation(CELLS) for _ in range(K - 1)])
    if not permute_channels:
        return cells, None
    return cells, np.stack([np.arange(6)] + [rng.permutation(6) for _ in range(K - 1)])


@pytest.mark.parametrize("permute_channels", [False, True])
@pytest.mark.parametrize("second", ["packed", "dense"])
def test_gather_ranges_moves_every_row_as_its_dense_planes(
        tmp_path: Path, second: str, permute_channels: bool) -> None:
    rng = np.random.default_rng(7)
    written = [batch_with(rng, 40, "a-"), batch_with(rng, 30, "b-")]
    paths = [write(tmp_path / "a.npz", [written[0]]),
             write(tmp_path / "b.npz", [written[1]],
                   **({"format_version": 2} if second == "dense" else {}))]
    readers = [open_rows(p) for p in paths]
    # the two packed files store their planes alike (the batch-wide path), a dense one not
    assert (readers[0]._storage == readers[1]._storage) == (second == "packed")
    ranges = [readers[0].read_range(5, 40), readers[1].read_range(0, 25)]
    dense = [written[0].features[5:40], written[1].features[0:25]]
    # unsorted rows, transforms in no order: several runs of one transform per range
    local = [rng.permutation(35)[:20], rng.permutation(25)[:17]]
    n = sum(part.size for part in local)
    transforms = rng.integers(0, K, n)
    cells, channels = tables(rng, permute_channels)

    rows = np.concatenate([d[part] for d, part in zip(dense, local)]).reshape(n, 6, CELLS)
    moved = np.arange(6)[None].repeat(n, 0) if channels is None else channels[transforms]
    expected = rows[np.arange(n)[:, None, None], moved[:, :, None],
                    cells[transforms][:, None, :]]
    out = np.full((n, 6, CELLS), np.nan, np.float32)
    gather_ranges(out, list(zip(ranges, local)), transforms, cells, channels)
    np.testing.assert_array_equal(out, expected)

    unmoved = np.full_like(out, np.nan)
    gather_ranges(unmoved, list(zip(ranges, local)))
    np.testing.assert_array_equal(unmoved, rows)
    for reader in readers:
        reader.close()
