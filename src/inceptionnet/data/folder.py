"""Image folders (`root/<class>/<image>`): scanning, a stratified split, a dataset that skips bad files.

A bad file never stops a run and is never silent: it is handed, with its path and reason, to whoever
consumes the data (through `FolderScan.skipped`, or `Batch.skipped`, which survives worker processes),
and that consumer reports it once: the trainer's log and report.json, eval's report, predict's stderr.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from ..errors import ConfigError, DataError
from .images import BadImageError, load_image, open_image

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)

Sample = tuple[str, int]


class FolderScan(NamedTuple):
    """What `scan_image_folder` found: (path, class index) samples, sorted class names, skipped (path, reason)."""

    samples: list[Sample]
    class_names: list[str]
    skipped: list[tuple[str, str]]


class SkippedSample(NamedTuple):
    """A dataset item standing in for a file that could not be decoded."""

    path: str
    reason: str


class Batch(NamedTuple):
    """A collated batch: images (N, C, H, W), targets (N,), and the (path, reason) of items skipped in it.

    When every item of a batch was skipped, `images` and `targets` are empty (N = 0).
    """

    images: Tensor
    targets: Tensor
    skipped: list[tuple[str, str]]


def _class_folders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _files_under(folder: Path) -> list[Path]:
    # Sorted so sample order (and so the seeded split) is the same on every file system.
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, name) for name in filenames)
    return sorted(found)


def scan_image_folder(root: str | os.PathLike) -> FolderScan:
    """List the images of `root/<class>/**/<file>`; class folders sorted by name give the class indices.

    Files whose extension is not an image's are skipped (and logged) with a reason. Raises `DataError`
    for a missing `root`, a `root` without class folders, or a class folder without images.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder; expected {root}/<class name>/<image files>")
    folders = _class_folders(root)
    if not folders:
        raise DataError(f"data folder {root} has no class folders; expected {root}/<class name>/<image files>")
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for label, folder in enumerate(folders):
        images = []
        for path in _files_under(folder):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                images.append((str(path), label))
            else:
                skipped.append((str(path), f"not an image file extension ({path.suffix or 'none'})"))
        if not images:
            raise DataError(f"class folder {folder} has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        samples.extend(images)
    return FolderScan(samples, [f.name for f in folders], skipped)


def stratified_split(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split (path, label) samples into train and validation, keeping each class's share.

    Each class gives `round(n * val_fraction)` samples to validation, at least 1 and at most n - 1,
    drawn with `seed`; the result does not depend on the input order. A class with a single sample keeps
    it in train (see `single_sample_classes` to say so). Raises `DataError` when no class can give any
    sample to validation and `ConfigError` for a fraction outside (0, 1).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    by_label = _by_label(samples)
    rng = random.Random(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_label):
        members = by_label[label]
        n_val = min(max(1, round(len(members) * val_fraction)), len(members) - 1)
        chosen = set(rng.sample(range(len(members)), n_val))
        for i, sample in enumerate(members):
            (val if i in chosen else train).append(sample)
    if not val:
        raise DataError(f"every class of {Path(samples[0][0]).parent.parent} has a single image: at least one "
                        "class needs 2 to split off validation")
    return sorted(train), sorted(val)


def single_sample_classes(samples: Sequence[Sample]) -> list[int]:
    """The labels that have exactly one sample (kept in train by `stratified_split`)."""
    return [label for label, members in sorted(_by_label(samples).items()) if len(members) == 1]


def _by_label(samples: Sequence[Sample]) -> dict[int, list[Sample]]:
    by_label: dict[int, list[Sample]] = defaultdict(list)
    for sample in sorted(samples):
        by_label[sample[1]].append(sample)
    return by_label


class ImageDataset(Dataset):
    """(path, label) samples decoded and transformed on access; items are `(tensor, label)`.

    A file that cannot be decoded gives a `SkippedSample(path, reason)`, which `collate_skipping` moves
    into `Batch.skipped`: nothing is raised inside a loader worker, and whoever consumes the batches
    reports each skipped file once (and stops on it under `--strict`).
    A transform with `takes_lazy_image = True` (ours) receives the header-only image from `open_image`
    and decodes it itself (so it can decode JPEGs at reduced size); any other gets a decoded RGB image.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable[[Any], Tensor]) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | SkippedSample:
        path, label = self.samples[index]
        try:
            if getattr(self.transform, "takes_lazy_image", False):
                with open_image(path) as img:
                    return self.transform(img), label
            return self.transform(load_image(path)), label
        except BadImageError as e:
            return SkippedSample(e.path, e.reason)


def collate_skipping(items: Sequence[tuple[Tensor, int] | SkippedSample]) -> Batch:
    """Stack `(tensor, label)` items into a `Batch`, moving `SkippedSample`s into `Batch.skipped`."""
    kept = [item for item in items if not isinstance(item, SkippedSample)]
    skipped = [(item.path, item.reason) for item in items if isinstance(item, SkippedSample)]
    if not kept:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped)
    # default_collate stacks straight into shared memory inside a worker, saving a copy per batch.
    images = default_collate([image for image, _ in kept])
    targets = default_collate([label for _, label in kept])
    return Batch(images, targets, skipped)
