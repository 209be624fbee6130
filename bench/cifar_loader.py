"""Small-image training batches: the in-memory loader (data/memory.py) against the per-image DataLoader path.

Run by hand:  PYTHONPATH=src .venv/bin/python bench/cifar_loader.py --data /tmp/cifar10 [--batches 20]
              [--rounds 5] [--workers 0] [--threads 1]

`--data` is a folder the engine takes (CIFAR-10 batches, or train/ and test/ class folders of 32 px JPEGs).
Both pipelines make the `cifar` recipe's training batches (pad 4 and crop, flip, normalise; batch 128) in the
engine's seeded order: the per-image path decodes and augments every image in DataLoader workers (or the main
process with --workers 0), the in-memory path decodes the set once (timed separately) and augments whole
batches with tensor ops. Timed in alternating rounds of --batches batches each; prints the median images/s.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from common import machine_header
from inceptionnet.data.datasets import build_datasets
from inceptionnet.data.loaders import build_loader
from inceptionnet.data.memory import BatchAugment, InMemoryLoader, in_memory_datasets
from inceptionnet.data.transforms import TrainAugment, build_eval_transform, build_train_transform
from inceptionnet.engine.distributed import TrainSampler
from inceptionnet.models.registry import CIFAR_PREPROCESS
from inceptionnet.runtime import set_threads

BATCH = 128


def per_image_loader(data: str, workers: int):
    """The engine's per-image training loader for the cifar recipe's augmentation."""
    aug = TrainAugment(pad_crop=4, hflip=True)
    datasets = build_datasets(data, 0.2, 0, build_train_transform(aug, CIFAR_PREPROCESS, 32),
                              build_eval_transform(CIFAR_PREPROCESS, 32))
    order = TrainSampler(datasets.train, seed=0, num_replicas=1, rank=0)
    return build_loader(datasets.train, BATCH, workers=workers, seed=0, drop_last=True, order=order)


def in_memory_loader(data: str) -> tuple[InMemoryLoader, float]:
    """The in-memory training loader and the seconds its one-time decode took."""
    start = time.perf_counter()
    datasets = in_memory_datasets(data, 0.2, 0, 32, CIFAR_PREPROCESS)
    decode_s = time.perf_counter() - start
    sampler = TrainSampler(datasets.train, seed=0, num_replicas=1, rank=0)
    loader = InMemoryLoader(datasets.train, BATCH, sampler, CIFAR_PREPROCESS, torch.device("cpu"), seed=0,
                            augment=BatchAugment(pad=4, flip=True), drop_last=True)
    return loader, decode_s


def images_per_s(loader, batches: int, epoch: int) -> float:
    """Images/s of the first `batches` batches of a pass over `epoch`."""
    loader.set_epoch(epoch)
    start = time.perf_counter()
    count = sum(len(batch.targets) for batch in itertools.islice(iter(loader), batches))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    print(machine_header())
    memory, decode_s = in_memory_loader(args.data)
    print(f"in-memory: {len(memory.dataset)} images decoded once in {decode_s:.1f}s "
          f"({memory.dataset.nbytes / 2**20:.0f} MiB uint8)")
    contenders = {"per-image DataLoader": per_image_loader(args.data, args.workers), "in-memory": memory}
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(args.rounds + 1):  # round 0 warms up (worker start, first allocations)
        for name, loader in contenders.items():
            rate = images_per_s(loader, args.batches, round_)
            if round_:
                rates[name].append(rate)
    base = statistics.median(rates["per-image DataLoader"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:22s} {median:10.0f} images/s  ({median / base:.1f}x the per-image path; "
              f"workers {args.workers if name.startswith('per') else 0}, {args.threads} torch threads)")


if __name__ == "__main__":
    main()
