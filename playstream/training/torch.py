"""`PlaystreamDataset`: the training stream as a torch ``IterableDataset``.

The one module of playstream that imports torch (the ``torch`` extra); everything it
yields is computed by the numpy `TrainingStream` and handed over with ``torch.from_numpy``
(no copy), so workers send plain tensors through the DataLoader's shared memory and
``pin_memory=True`` pins them like any other batch. Use it with ``batch_size=None``: the
dataset cuts the batches itself, because the split between workers, the shuffle buffer and
the resume cursor are all per batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from playstream.training.loader import StreamOptions, TrainingStream


class _SharedArrays:
    """The allocator a DataLoader worker gives the stream: numpy arrays over tensors that
    live in torch shared memory from the start, as ``default_collate`` builds its batches.
    Sending such a tensor to the main process passes its file descriptor; any other tensor
    is first copied into new shared memory, a second copy of every batch."""

    def __init__(self) -> None:
        self._tensors: dict[int, torch.Tensor] = {}

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes == 0:
            return np.empty(shape, dtype)
        tensor = torch.from_numpy(np.empty(0, dtype)).set_(
            torch.UntypedStorage._new_shared(nbytes)).view(shape)
        array = tensor.numpy()
        self._tensors[array.ctypes.data] = tensor
        return array

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """The shared tensor under ``array`` if this allocator made it, else a view."""
        tensor = self._tensors.get(array.ctypes.data)
        if tensor is not None and tuple(tensor.shape) == array.shape:
            return tensor
        return torch.from_numpy(array)

    def clear(self) -> None:
        """Forget the batch handed over (the DataLoader owns it now)."""
        self._tensors.clear()


def _rank0_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Every rank reads the version rank 0 resolved, so a version published between two
    ranks' looks cannot split an epoch between versions."""
    box = [snapshot]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class PlaystreamDataset(IterableDataset):  # type: ignore[type-arg]
    """Dict batches of tensors: ``features`` float32 [B, C, H, W], ``globals`` [B, G],
    ``policy`` float32 [B, P] (or with ``dense_policy=False`` the CSR triple
    ``policy_indptr`` / ``policy_indices`` / ``policy_values``, see `to_sparse_csr`),
    ``values`` [B], ``values_mp`` [B, 4], ``cursor`` int64 [4] (epoch, shard, index, shards:
    what `record` reads to resume), and with ``with_ids`` ``game_id`` (a numpy string array)
    and ``move_number``.

    ``rank``/``world_size`` default to torch.distributed's when it is initialised. Options:
    see `StreamOptions`. Call `set_epoch` before each epoch; wrap the loader in `track` (or
    call `record` per batch) so that `state_dict` knows what was trained.
    """

    def __init__(self, source: str | Path, *, batch_size: int, seed: int = 0,
                 shuffle_buffer: int = 8192, augment: bool = False, dense_policy: bool = True,
                 with_ids: bool = False, follow: bool = False, rank: int | None = None,
                 world_size: int | None = None, **options: Any) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        if world_size is None:
            world_size = dist.get_world_size() if distributed else 1
        self.stream = TrainingStream(
            source, StreamOptions(batch_size=batch_size, seed=seed,
                                  shuffle_buffer=shuffle_buffer, augment=augment,
                                  dense_policy=dense_policy, with_ids=with_ids, follow=follow,
                                  **options),
            rank=rank, world_size=world_size,
            agree=_rank0_snapshot if distributed and world_size > 1 else None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is None:  # the main process: nothing to hand over, plain numpy memory
            for batch in self.stream.iterate(0, 1):
                yield {name: value if value.dtype.kind == "U" else torch.from_numpy(value)
                       for name, value in batch.items()}
            return
        shared = _SharedArrays()
        for batch in self.stream.iterate(info.id, info.num_workers, shared):
            yield {name: value if value.dtype.kind == "U" else shared.tensor(value)
                   for name, value in batch.items()}
            shared.clear()

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def record(self, batch: dict[str, Any]) -> None:
        self.stream.record({"cursor": np.asarray(batch["cursor"])})

    def track(self, batches: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for batch in batches:
            self.record(batch)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)


def to_sparse_csr(batch: dict[str, Any], policy_size: int) -> torch.Tensor:
    """The policy of a ``dense_policy=False`` batch as a torch sparse CSR tensor [B, P]."""
    indptr = batch["policy_indptr"]
    return torch.sparse_csr_tensor(indptr, batch["policy_indices"].to(torch.int64),
                                   batch["policy_values"],
                                   size=(indptr.numel() - 1, policy_size))
