"""DataLoaders with seeded order and seeded augmentation per (seed, epoch, worker, rank).

Workers are persistent, so they are not restarted (and re-seeded by torch) each epoch. Instead the
sampler tags every index with its epoch and each worker re-seeds Python, NumPy and torch the first
time it sees a new epoch. A run therefore repeats exactly for a given seed and worker count, and a
run resumed at epoch k draws what an uninterrupted one would have.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from .folder import collate_skipping


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from several integers (seed, epoch, worker, rank...)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global RNG and torch (CPU and every GPU) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EpochSampler(Sampler):
    """Yields `(epoch, index)`: the indices of `sampler`, or a seeded permutation, or 0..n-1 in order.

    The epoch advances by one per pass unless `set_epoch` says otherwise; a sampler with its own
    `set_epoch` (DistributedSampler) is told the epoch too.
    """

    def __init__(self, size: int, shuffle: bool, seed: int, sampler: Sampler | None = None) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler) if isinstance(self.sampler, Sized) else self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # A generator, so the epoch is taken when iteration starts, not when an iterator is created.
        epoch = self.epoch
        self.epoch += 1
        if self.sampler is not None:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            order = list(self.sampler)
        elif self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        for index in order:
            yield epoch, index


class EpochSeededDataset(Dataset):
    """Wraps a dataset for `EpochSampler` keys; in a worker, re-seeds at each new epoch.

    Attributes not found here (samples, classes...) are read from the wrapped dataset.
    """

    def __init__(self, dataset: Dataset, seed: int, rank: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.rank = rank
        self._seeded_epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        # "dataset" is not set yet during unpickling (avoid recursing); dunders such as __getitems__ must
        # not come from the wrapped dataset, or DataLoader would hand it our (epoch, index) keys.
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        worker = get_worker_info()
        if worker is not None and epoch != self._seeded_epoch:
            seed_everything(derive_seed(self.seed, epoch, worker.id, self.rank))
            self._seeded_epoch = epoch
        return self.dataset[index]


class EpochLoader(DataLoader):
    """A DataLoader whose `set_epoch(epoch)` fixes the order and augmentation seeds of the next pass."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    drop_last: bool = False,
    sampler: Sampler | None = None,
) -> EpochLoader:
    """A loader of `Batch(images (N, C, H, W), targets (N,), skipped)` over `dataset`.

    `shuffle` draws a new seeded permutation each epoch (ignored when `sampler` is given, e.g. a
    DistributedSampler). Workers are persistent and seeded from (seed, epoch, worker id, rank);
    memory is pinned when CUDA is available.
    """
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return EpochLoader(
        EpochSeededDataset(dataset, seed, rank),
        batch_size=batch_size,
        sampler=EpochSampler(len(dataset), shuffle, seed, sampler),
        num_workers=workers,
        collate_fn=collate_skipping,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
