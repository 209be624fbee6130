"""`build_datasets`: turn `--data` (nothing, an image folder, train/val folders, CIFAR-10) into datasets."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import DataError
from .cifar import cifar10_datasets, find_cifar10_root
from .folder import FolderScan, ImageDataset, Sample, scan_image_folder, single_sample_classes, stratified_split
from .synthetic import ensure_synthetic_dataset

Transform = Callable


@dataclass
class Datasets:
    """Train, validation and optional test datasets with their class names.

    `skipped` lists (path, reason) for files left out while scanning; `source` says in words where
    the data came from (for logs and reports); `notes` are warnings for the log (a class kept out of
    validation because it has a single image).
    """

    train: Dataset
    val: Dataset
    test: Dataset | None
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)


def _relabel(scan: FolderScan, class_names: list[str], folder: Path) -> list[Sample]:
    """`scan`'s samples with labels re-indexed into `class_names` (split folders must share the classes)."""
    unknown = sorted(set(scan.class_names) - set(class_names))
    if unknown:
        raise DataError(f"{folder} has class folders not in the training set: {', '.join(unknown)}")
    index = {name: i for i, name in enumerate(class_names)}
    return [(path, index[scan.class_names[label]]) for path, label in scan.samples]


def _from_split_folders(root: Path, train_transform: Transform, eval_transform: Transform) -> Datasets:
    train_scan = scan_image_folder(root / "train")
    names = train_scan.class_names
    # Without val/, the test split validates (as CIFAR-10's batches do) and there is no separate test split.
    val_name = "val" if (root / "val").is_dir() else "test"
    val_scan = scan_image_folder(root / val_name)
    test_dataset, skipped = None, train_scan.skipped + val_scan.skipped
    if val_name == "val" and (root / "test").is_dir():
        test_scan = scan_image_folder(root / "test")
        test_dataset = ImageDataset(_relabel(test_scan, names, root / "test"), eval_transform)
        skipped += test_scan.skipped
    return Datasets(
        train=ImageDataset(train_scan.samples, train_transform),
        val=ImageDataset(_relabel(val_scan, names, root / val_name), eval_transform),
        test=test_dataset,
        class_names=names,
        skipped=skipped,
        source=f"train/val folders in {root}" if val_name == "val" else
        f"train/test folders in {root} (validation = test)",
    )


def _from_one_folder(
    root: Path, val_split: float, seed: int, train_transform: Transform, eval_transform: Transform
) -> Datasets:
    scan = scan_image_folder(root)
    train, val = stratified_split(scan.samples, val_split, seed)
    return Datasets(
        train=ImageDataset(train, train_transform),
        val=ImageDataset(val, eval_transform),
        test=None,
        class_names=scan.class_names,
        skipped=scan.skipped,
        source=f"{root}, split {1 - val_split:g}/{val_split:g} with seed {seed}",
        notes=single_image_notes(scan.samples, scan.class_names),
    )


def single_image_notes(samples: list[Sample], class_names: list[str]) -> list[str]:
    """One warning per class of `samples` with a single image: the split keeps it in train."""
    return [f"class {class_names[label]} has a single image: kept in train, none of it in validation"
            for label in single_sample_classes(samples)]


def has_split_folders(root: Path) -> bool:
    """Whether `root` holds its splits as class folders: `train/` with `val/` and/or `test/`."""
    return (root / "train").is_dir() and ((root / "val").is_dir() or (root / "test").is_dir())


def has_predefined_splits(root: Path) -> bool:
    """Whether `build_datasets` reads `root` as given splits (split folders, or CIFAR-10's batches) rather than
    splitting it by `val_split`."""
    return has_split_folders(root) or find_cifar10_root(root) is not None


def build_datasets(
    data: str | os.PathLike | None,
    val_split: float,
    seed: int,
    train_transform: Transform,
    eval_transform: Transform,
) -> Datasets:
    """Datasets for `--data`; items are `(tensor, label)` (or `SkippedSample` for a bad file).

    - None: the embedded synthetic shapes set, split by `val_split` with `seed`;
    - a folder with `train/` and `val/` (and optionally `test/`) class folders: those; with `train/` and
      `test/` only, the test split is the validation split;
    - a folder holding `cifar-10-batches-py`, or that folder: CIFAR-10 (validation = its test batch);
    - any other folder of class folders: a seeded stratified split by `val_split`.
    """
    if data is None:
        root = ensure_synthetic_dataset()
        datasets = _from_one_folder(root, val_split, seed, train_transform, eval_transform)
        datasets.source = "synthetic shapes: " + datasets.source
        return datasets
    root = Path(data)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if find_cifar10_root(root) is not None:
        train, test, names = cifar10_datasets(root, train_transform, eval_transform)
        return Datasets(train, test, None, names, [], f"CIFAR-10 in {root} (validation = test batch)")
    if has_split_folders(root):
        return _from_split_folders(root, train_transform, eval_transform)
    return _from_one_folder(root, val_split, seed, train_transform, eval_transform)
