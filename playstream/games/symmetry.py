"""A game's symmetry group, as index permutations the training loader can apply to a batch.

The game declares it (`Game.symmetries`), because only the game knows how a rotation moves
both its plane cells and its actions (an action is not always a cell: a pass, a column, a
chess move). Permutations are gathers, so applying one is a single vectorised ``take``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from playstream.errors import PlaystreamError


@dataclass(frozen=True)
class Symmetries:
    """K transforms; transform 0 is the identity.

    For transform k, with planes flattened over their H*W cells:
    ``new_planes[..., i] = planes[..., cells[k, i]]`` and
    ``new_policy[..., a] = policy[..., actions[k, a]]``; ``channels[k]`` (optional) permutes
    the channels the same way (a hex board's 180° turn swaps which edge a plane names).
    """

    names: tuple[str, ...]
    cells: np.ndarray  # int64 [K, H*W]
    actions: np.ndarray  # int64 [K, num_actions]
    channels: np.ndarray | None = None  # int64 [K, C]

    def __post_init__(self) -> None:
        k = len(self.names)
        for label, perm in (("cells", self.cells), ("actions", self.actions),
                            ("channels", self.channels)):
            if perm is None:
                continue
            if perm.ndim != 2 or perm.shape[0] != k:
                raise PlaystreamError(f"symmetry {label} must be [K={k}, n], got {perm.shape}",
                                      field=label)
            if not (np.sort(perm, axis=1) == np.arange(perm.shape[1])).all():
                raise PlaystreamError(f"symmetry {label} rows must be permutations",
                                      field=label)
            if not (perm[0] == np.arange(perm.shape[1])).all():
                raise PlaystreamError("symmetry 0 must be the identity", field=label)

    @property
    def size(self) -> int:
        return len(self.names)

    @cached_property
    def moved_actions(self) -> np.ndarray:
        """int64 [K, num_actions]: where transform k moves old action j, ``actions``
        inverted (a policy entry is moved by scattering it, not gathered)."""
        return np.argsort(self.actions, axis=1)

    @staticmethod
    def identity(num_cells: int, num_actions: int) -> Symmetries:
        """The trivial group: what a game without symmetries (chess) declares."""
        return Symmetries(("identity",), np.arange(num_cells, dtype=np.int64)[None],
                          np.arange(num_actions, dtype=np.int64)[None])
