"""A cheap look at a dataset before training: image and class counts, class balance, typical image size.

Only file names are listed and a few dozen image headers read (no pixel is decoded), so this costs well
under a second even for tens of thousands of files. `recipes_auto.plan_auto` chooses a recipe from it.
"""

from __future__ import annotations

import os
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from .cifar import find_cifar10_root
from .folder import scan_image_folder
from .images import BadImageError, open_image, oriented_size

# Headers sampled for the typical image size.
SIZE_SAMPLE = 48
CIFAR_SUMMARY = {"images": 50_000, "classes": 10, "size": 32}


@dataclass(frozen=True)
class DataSummary:
    """What `summarize_data` found: `images` training images (before any validation split) in `class_counts`
    (one count a class), `typical_side` the median shorter side of the sampled images in pixels; `presplit`
    when the data brings its own validation images (no split is taken from `images`)."""

    images: int
    class_counts: tuple[int, ...]
    typical_side: int
    source: str
    presplit: bool = False

    @property
    def classes(self) -> int:
        return len(self.class_counts)

    @property
    def imbalance(self) -> float:
        """Images of the largest class over those of the smallest (1.0 = balanced)."""
        return max(self.class_counts) / max(min(self.class_counts), 1)

    def describe(self) -> str:
        return (f"{self.images} images, {self.classes} classes (largest/smallest {self.imbalance:.1f}x), "
                f"typical side {self.typical_side}px")


def summarize_data(data: str | os.PathLike, seed: int = 0) -> DataSummary:
    """Summarise `--data` (a folder of class folders, a train/val folder, or CIFAR-10 batches) without
    decoding pixels. Raises `DataError` as the folder scan does (missing folder, empty class...)."""
    root = Path(data)
    if find_cifar10_root(root) is not None:
        c = CIFAR_SUMMARY
        per_class = c["images"] // c["classes"]
        return DataSummary(c["images"], (per_class,) * c["classes"], c["size"], "CIFAR-10 batches", True)
    presplit = (root / "train").is_dir() and (root / "val").is_dir()
    if presplit:
        root = root / "train"
    scan = scan_image_folder(root)
    counts = [0] * len(scan.class_names)
    for _, label in scan.samples:
        counts[label] += 1
    paths = [path for path, _ in scan.samples]
    sample = random.Random(seed).sample(paths, min(SIZE_SAMPLE, len(paths)))
    return DataSummary(len(paths), tuple(counts), _median_side(sample), str(root), presplit)


def _median_side(paths: list[str]) -> int:
    """Median shorter side (after EXIF orientation) of the readable images among `paths`; 0 if none is."""
    sides = []
    for path in paths:
        try:
            with open_image(path) as img:
                sides.append(min(oriented_size(img)))
        except BadImageError:
            continue  # the training run reports unreadable files; one here only shrinks the sample
    return int(statistics.median(sides)) if sides else 0
