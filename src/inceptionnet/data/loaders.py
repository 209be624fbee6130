"""DataLoaders whose order and augmentation are a function of (seed, epoch, index): the one
reproducibility layer of the data.

`EpochSampler` tags every index with its epoch; `SeededSamples` runs each item with torch's generator
seeded from (seed, epoch, index). An image's augmentation therefore does not depend on
the worker that loads it, on the number of workers or on the items before it: a run repeats exactly
for a given seed, and a run resumed at epoch k (or inside it, with `set_epoch(epoch, skip)`) draws
what an uninterrupted one would have.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..runtime import mix_seed
from .folder import collate_skipping


def announce_epoch(order: Sampler | None, epoch: int, skip: int = 0) -> None:
    """Tell the sampler `order` that its next pass is epoch `epoch`, leaving out its first `skip` indices (a
    resumable sampler's `set_epoch(epoch, skip)`); a ValueError when `skip` asks more than it can do."""
    if hasattr(order, "set_epoch"):
        order.set_epoch(epoch, skip) if skip else order.set_epoch(epoch)
    elif skip:
        raise ValueError("this sampler cannot resume inside an epoch")


class EpochSampler(Sampler):
    """Yields `(epoch, index)` for the indices of `order`, or of a seeded permutation of `size` (`shuffle`),
    or of 0..size-1.

    `set_epoch(epoch, skip)` selects the pass (and tells `order` when it has `set_epoch`, as the training
    sampler does, which also drops its first `skip` indices); without it, each pass takes the next epoch.
    """

    def __init__(self, size: int, shuffle: bool = False, seed: int = 0, order: Sampler | None = None) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.order = order
        self.epoch = 0
        self._announced = False

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """The next pass is epoch `epoch`; an `order` that can resume leaves out its first `skip` indices."""
        self.epoch, self._announced = epoch, True
        announce_epoch(self.order, epoch, skip)

    def __len__(self) -> int:
        return len(self.order) if self.order is not None else self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # A generator: the epoch is taken when iteration starts, not when an iterator is created.
        if not self._announced:
            self.set_epoch(self.epoch)
        epoch, self._announced = self.epoch, False
        self.epoch += 1
        if self.order is not None:
            indices = list(self.order)
        elif self.shuffle:
            indices = torch.randperm(self.size, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
            indices = indices.tolist()
        else:
            indices = range(self.size)
        for index in indices:
            yield epoch, index


class SeededSamples(Dataset):
    """Wraps a dataset so that item `(epoch, index)` runs with torch's CPU generator seeded from (seed,
    epoch, index); the caller's generator state is put back afterwards, so loading in the main process
    does not disturb the training randomness (dropout). Only torch's generator: the transforms applied
    (torchvision.transforms.v2, mixing, erasing) draw from it alone, and saving and restoring NumPy's global
    state would cost 0.3 ms an item, against 7 us for torch's. `seed` None leaves the generator alone, for
    deterministic transforms. Other attributes come from the dataset."""

    def __init__(self, dataset: Dataset, seed: int | None) -> None:
        self.dataset = dataset
        self.seed = seed

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
        if self.seed is None:
            return self.dataset[index]
        saved = torch.get_rng_state()
        try:
            # The CPU generator only: torch.manual_seed also queues a seed for every lazily initialised
            # accelerator, recording a stack trace each time (about 1 ms, most of a small image's load time).
            torch.default_generator.manual_seed(mix_seed(self.seed, epoch, index))
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved)


class EpochLoader(DataLoader):
    """A DataLoader whose `set_epoch(epoch, skip)` fixes the order and augmentation seeds of the next pass."""

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """See `EpochSampler.set_epoch`."""
        self.sampler.set_epoch(epoch, skip)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    seed: int,
    shuffle: bool = False,
    drop_last: bool = False,
    order: Sampler | None = None,
    seed_items: bool = True,
) -> EpochLoader:
    """A loader of `Batch(images (N, C, H, W), targets (N,), skipped)` over `dataset`.

    The indices come from `order` (for example the distributed training sampler) or, with `shuffle`, from a
    permutation seeded by (seed, epoch), else in order. Each item is seeded from (seed, epoch, index), unless
    `seed_items` is False (deterministic transforms, such as evaluation's).
    Workers are persistent and ignore Ctrl-C (the main process stops them); memory is pinned when CUDA is
    available.
    """
    return EpochLoader(
        SeededSamples(dataset, seed if seed_items else None),
        batch_size=batch_size,
        sampler=EpochSampler(len(dataset), shuffle, seed, order),
        num_workers=workers,
        collate_fn=collate_skipping,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=leave_interrupts_to_the_main_process if workers > 0 else None,
    )


def leave_interrupts_to_the_main_process(worker_id: int) -> None:
    """Loader workers ignore Ctrl-C. A terminal sends it to the whole process group; a worker that died of it
    would fail the main process's next fetch before training can end its step and write last.pt."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
