"""The symmetry groups of connect's boards, as the gathers `Symmetries` describes.

A rule of connect only asks "k in a row along one of the board's line axes", so every map of
the board onto itself that keeps the set of line axes keeps the game: the 8 rotations and
reflections of a square, and the 12 of a hexagon (rotations by 60° and reflections) for the
hex boards. Hex cells are axial (q, r) stored at row r + R, column q + R (see rules._hex); the
corner cells of that grid are off the board and stay where they are. An action is a cell, so
the action gather is the cell gather; connect's planes name seats, not edges, so channels are
never permuted.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from playstream.games.connect.rules import _HEX_LINES, _SQUARE_LINES, board_spec
from playstream.games.symmetry import Symmetries


def _group(names: list[str], gathers: list[np.ndarray]) -> Symmetries:
    cells = np.stack(gathers).astype(np.int64)
    cells.setflags(write=False)
    return Symmetries(names=tuple(names), cells=cells, actions=cells)


def _square(size: int) -> Symmetries:
    """np.rot90 and the transpose of the grid of cell indices are the gathers themselves:
    the transformed board's cell i holds the old cell ``rot90(grid)[i]``."""
    grid = np.arange(size * size).reshape(size, size)
    names, gathers = [], []
    for mirrored in (False, True):
        for quarter in range(4):
            names.append(f"{'mirror_' if mirrored else ''}rot{90 * quarter}")
            gathers.append(np.rot90(grid.T if mirrored else grid, quarter).ravel())
    return _group(names, gathers)


def _hexagon(valid: np.ndarray) -> Symmetries:
    """Forward maps in axial coordinates, inverted into gathers: the new cell a cell goes
    to reads that cell."""
    height, width = valid.shape
    radius = height // 2
    rows, cols = np.indices(valid.shape)
    q, r = cols - radius, rows - radius
    names, gathers = [], []
    for mirrored in (False, True):
        mq, mr = (r, q) if mirrored else (q, r)  # swapping q and r is a reflection
        for sixth in range(6):
            target = np.where(valid, (mr + radius) * width + (mq + radius), rows * width + cols)
            gather = np.empty(valid.size, dtype=np.int64)
            gather[target.ravel()] = np.arange(valid.size)
            names.append(f"{'mirror_' if mirrored else ''}rot{60 * sixth}")
            gathers.append(gather)
            mq, mr = -mr, mq + mr  # (q, r) -> (-r, q + r): a turn by 60° about the centre
    return _group(names, gathers)


@lru_cache(maxsize=None)
def symmetries(board_type: str) -> Symmetries:
    """The board's group: identity first, then the rotations, then the reflections."""
    spec = board_spec(board_type)
    valid = spec.geometry.valid
    directions = {(b, a) for a, b in _SQUARE_LINES}
    if set(spec.directions) == directions:
        return _square(spec.geometry.height)
    assert set(spec.directions) == {(b, a) for a, b in _HEX_LINES}, board_type
    return _hexagon(valid)
