"""Training data for trainers: batches from published datasets, pure numpy here.

`iter_batches` and `TrainingStream` need nothing but numpy (JAX or numpy trainers use them
directly); `PlaystreamDataset`, the torch ``IterableDataset`` over the same stream, lives in
`playstream.training.torch`, the one module that imports torch (the ``torch`` extra). It is
also reachable as ``playstream.training.PlaystreamDataset``, resolved on first access so that
importing this package never imports torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from playstream.training.loader import StreamOptions, TrainingStream, iter_batches
from playstream.training.sources import Snapshot, resolve

__all__ = ["PlaystreamDataset", "Snapshot", "StreamOptions", "TrainingStream", "iter_batches",
           "resolve"]


def __getattr__(name: str) -> Any:
    if name == "PlaystreamDataset":
        return importlib.import_module("playstream.training.torch").PlaystreamDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
