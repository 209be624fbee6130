"""Seeding, deterministic mode, RNG snapshots and a data order that can resume mid-epoch.

Exact resume needs three things: the random number generators as they were at the checkpoint
(`rng_state` / `restore_rng_state`, stored as tensors and plain types so `weights_only=True` loads
them), the same sample order, continued at the same position (`EpochSampler`: a permutation that is
a function of (seed, epoch), started at an offset: `distributed.TrainSampler`, tagged with the epoch
by `EpochTaggedSampler`), and augmentation randomness that does not depend on which worker or which
earlier samples ran (`SeededSamples`: each sample's transform is seeded from (seed, epoch, index)).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_MASK64 = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, different for (a, b) and (b, a) (splitmix-style mixing)."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (int(part) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & _MASK64
        h = (h * 0xBF58476D1CE4E5B9) & _MASK64
        h ^= h >> 31
    return h


def set_deterministic(enabled: bool) -> None:
    """Ask torch for deterministic kernels (and cuDNN without benchmarking) when `enabled`."""
    if enabled:  # cuBLAS is only deterministic with a fixed workspace; must be set before its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def rng_state() -> dict:
    """The state of every generator as tensors and plain types (loadable with `weights_only=True`)."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }


def restore_rng_state(state: dict) -> None:
    """Put every generator back to a snapshot taken by `rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


class EpochTaggedSampler(Sampler):
    """Yields `(epoch, index)` for each index of `sampler` (a `distributed.TrainSampler`), so the epoch
    reaches `SeededSamples` even in persistent worker processes.

    `set_epoch(epoch, skip)` is passed on; a later `set_epoch(epoch)` for the same epoch without `skip`
    (as a wrapping loader sampler calls it when a pass starts) keeps the skip, so a resumed epoch
    still starts where the checkpoint stopped.
    """

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int | None = None) -> None:
        if skip is None:
            skip = self.skip if epoch == self.epoch else 0
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch, skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for index in self.sampler:
            yield epoch, index

    def __len__(self) -> int:
        return len(self.sampler)


class SeededSamples(Dataset):
    """Wraps a dataset so that item `(epoch, index)` runs with torch, NumPy and Python `random` seeded
    from (seed, epoch, index); the caller's generator states are put back afterwards, so loading in
    the main process does not disturb the training randomness (dropout)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        sample_seed = mix_seed(self.seed, epoch, index)
        saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
        try:
            # The CPU generator only: torch.manual_seed also queues a seed for every lazily initialised
            # accelerator, recording a stack trace each time (about 1 ms, most of a small image's load time).
            torch.default_generator.manual_seed(sample_seed)
            random.seed(sample_seed)
            np.random.seed(sample_seed % 2**32)
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])
