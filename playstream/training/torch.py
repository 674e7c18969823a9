"""`PlaystreamDataset`: the training stream as a torch ``IterableDataset``.

The one module of playstream that imports torch (the ``torch`` extra); everything it
yields is computed by the numpy `TrainingStream` and handed over without a copy: in a
DataLoader worker the stream writes each batch straight into one block of torch shared
memory (`_SharedBatches`), so the DataLoader passes one file descriptor per batch instead of
copying every tensor into a shared-memory file of its own, and ``pin_memory=True`` pins the
tensors like any other batch. Use it with ``batch_size=None``: the
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

from playstream.training.collate import Specs
from playstream.training.loader import StreamOptions, TrainingStream


ALIGN = 64  # bytes: each array of a batch block starts on a cache line


class _SharedBatches:
    """The allocator a DataLoader worker gives the stream: the numeric arrays of a batch as
    numpy views of one block of torch shared memory, as ``default_collate`` builds its
    batches in shared memory from the start. Sending tensors over that block passes one
    file descriptor per batch; any other tensor is first copied into a shared-memory file
    of its own (a second copy of the batch and a descriptor handed over per array)."""

    def __init__(self) -> None:
        self._tensors: dict[int, torch.Tensor] = {}

    def __call__(self, specs: Specs) -> dict[str, np.ndarray]:
        sizes = {name: int(np.prod(shape)) * np.dtype(dtype).itemsize
                 for name, (shape, dtype) in specs.items()}
        starts = np.cumsum([0] + [-(-n // ALIGN) * ALIGN for n in sizes.values()])
        block = torch.empty(0, dtype=torch.uint8).set_(
            torch.UntypedStorage._new_shared(max(int(starts[-1]), 1)))
        arrays = {}
        for (name, (shape, dtype)), start in zip(specs.items(), starts.tolist()):
            like = torch.from_numpy(np.empty(0, dtype))
            tensor = block[start:start + sizes[name]].view(like.dtype).view(shape)
            arrays[name] = tensor.numpy()
            if sizes[name]:
                self._tensors[arrays[name].ctypes.data] = tensor
        return arrays

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """The shared tensor under ``array`` if it is one this allocator handed out, else a
        view (which the DataLoader copies into shared memory)."""
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

    From DataLoader workers, the numeric tensors of a batch are views of one shared-memory
    block: a tensor kept past its step keeps the whole batch's block alive (``clone()`` it).

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
            shared, batches = None, self.stream.iterate(0, 1)
        else:
            shared = _SharedBatches()
            batches = self.stream.iterate(info.id, info.num_workers, shared)
        to_tensor = torch.from_numpy if shared is None else shared.tensor
        for batch in batches:
            yield {name: value if value.dtype.kind == "U" else to_tensor(value)
                   for name, value in batch.items()}
            if shared is not None:
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
