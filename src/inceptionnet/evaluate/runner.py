"""`inceptionnet.evaluate`: a checkpoint (or an ensemble) on an image folder, CIFAR-10 or the embedded
synthetic set, with centre, TenCrop or GoogLeNet's 144-crop testing; writes report.json and the
confusion matrix (CSV and PNG)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from ..fileio import atomic_write_text
from .ensemble import Member, average_probabilities, load_members, resolve_device
from .metrics import ClassificationMetrics, write_confusion_csv
from .tta import MultiCropTransform, check_mode, crops_per_image

SPLITS = ("auto", "all", "val", "test")


class PerMemberTransform:
    """PIL image -> tuple of (K, C, S, S) crop tensors, one per ensemble member (each with its own
    preprocessing and input size)."""

    def __init__(self, transforms: Sequence[MultiCropTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Image.Image) -> tuple[Tensor, ...]:
        return tuple(t(image) for t in self.transforms)


@dataclass
class EvalData:
    """The images an evaluation runs on: a dataset of (crops per member, label) items, its class names,
    the files skipped while scanning and a description of where it came from."""

    dataset: Dataset
    class_names: list[str]
    skipped: list[tuple[str, str]]
    description: str


def _is_split_layout(root: Path) -> bool:
    # Folders that build_datasets reads as predefined splits: train/ + val/ (optional test/), or CIFAR-10.
    return ((root / "train").is_dir() and (root / "val").is_dir()) or root.name == "cifar-10-batches-py" \
        or (root / "cifar-10-batches-py").is_dir()


def load_eval_data(data: str | os.PathLike | None, transform, split: str = "auto", val_split: float = 0.1,
                   seed: int = 0) -> EvalData:
    """Pick the evaluation images of `data`.

    `split="auto"`: the test split of a train/val[/test] folder or CIFAR-10 when it has one, else its val
    split; the val split of the synthetic set (`data=None`); every image of a plain folder of class folders.
    "val"/"test" ask for that split (a plain folder is split like training does, with `val_split`, `seed`);
    "all" takes every image of a plain folder.
    """
    from ..data.datasets import build_datasets
    from ..data.folder import ImageDataset, scan_image_folder

    if split not in SPLITS:
        raise DataError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = None if data is None else Path(data)
    if root is not None and not root.exists():
        raise DataError(f"--data {root}: no such folder")
    plain_folder = root is not None and not _is_split_layout(root)
    if split == "all" or (split == "auto" and plain_folder):
        if not plain_folder:
            raise DataError(f"--split all needs a folder of class folders; {root} holds predefined splits")
        scan = scan_image_folder(root)
        return EvalData(ImageDataset(scan.samples, transform), scan.class_names, list(scan.skipped), f"{root} (all)")
    sets = build_datasets(None if root is None else str(root), val_split, seed, transform, transform)
    name = "test" if split == "test" or (split == "auto" and sets.test is not None) else "val"
    dataset = sets.test if name == "test" else sets.val
    where = "synthetic set" if root is None else str(root)
    if dataset is None:
        raise DataError(f"--split test: {where} has no test split")
    return EvalData(dataset, list(sets.class_names), list(sets.skipped), f"{where} ({name})")


def _label_map(data_classes: Sequence[str], model_classes: Sequence[str], where: str) -> Tensor:
    """Index map from the dataset's class indices to the model's; every data class must be a model class."""
    position = {name: i for i, name in enumerate(model_classes)}
    unknown = [name for name in data_classes if name not in position]
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise DataError(f"{where}: {len(unknown)} class folder(s) the checkpoint does not know: {shown}")
    return torch.tensor([position[name] for name in data_classes])


def _progress(iterable, total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc="eval", unit="batch", disable=quiet or not sys.stderr.isatty(),
                leave=False)


def evaluate(checkpoint: str | os.PathLike, data: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
             tta: str = "center", ensemble: Sequence[str | os.PathLike] = (), batch_size: int = 64,
             device: str | None = None, workers: int = 0, split: str = "auto", val_split: float = 0.1,
             seed: int = 0, quiet: bool = True) -> dict:
    """Evaluate `checkpoint` (plus the `ensemble` checkpoints, softmax averaged over models) on `data`.

    `tta` is "center", "10crop" or "144crop" (softmax averaged over each image's crops); `batch_size`
    bounds the crops per forward pass. Images are streamed, so memory does not grow with the dataset.
    Returns the report (also written to `out`/report.json with confusion.csv and confusion.png when
    `out` is given): top1, top5, loss, macro and per-class precision/recall/F1, confusion matrix, timing.
    """
    from ..data.loaders import build_loader

    check_mode(tta)
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    members = load_members([checkpoint, *ensemble], resolve_device(device))
    class_names = members[0].class_names
    transform = PerMemberTransform([MultiCropTransform(tta, m.preprocess) for m in members])
    eval_data = load_eval_data(data, transform, split, val_split, seed)
    to_model_label = _label_map(eval_data.class_names, class_names, eval_data.description)

    crops = crops_per_image(tta)
    images_per_step = max(1, batch_size // crops)
    loader = build_loader(eval_data.dataset, images_per_step, shuffle=False, workers=workers, seed=seed)
    metrics = ClassificationMetrics(len(class_names))
    skipped = list(eval_data.skipped)
    start = time.perf_counter()
    for batch in _progress(loader, len(loader), quiet):
        skipped += list(batch.skipped)
        if len(batch.targets) == 0:
            continue
        probs = _batch_probabilities(members, batch.images, batch_size)
        metrics.update(probs, to_model_label[batch.targets])
    seconds = time.perf_counter() - start
    if metrics.count == 0:
        raise DataError(f"{eval_data.description}: no readable images to evaluate")

    report = {
        "checkpoints": [m.source for m in members],
        "models": [getattr(getattr(m.model, "spec", None), "name", type(m.model).__name__) for m in members],
        "data": eval_data.description,
        "tta": tta,
        "crops_per_image": crops,
        **metrics.compute(class_names),
        "confusion": metrics.confusion.tolist(),
        "class_names": class_names,
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "seconds": seconds,
        "seconds_per_image": seconds / metrics.count,
        "device": str(members[0].device),
    }
    if out is not None:
        write_report(report, metrics.confusion, out)
    return report


def _batch_probabilities(members: Sequence[Member], images, max_batch: int) -> Tensor:
    """(B, classes) probabilities of a batch: crops of member i are `images[i]`, (B, K, C, S, S)."""
    return average_probabilities([m.crop_probabilities(x, max_batch) for m, x in zip(members, images, strict=True)])


def write_report(report: dict, confusion: Tensor, out: str | os.PathLike) -> Path:
    """Write report.json, confusion.csv and confusion.png into the folder `out`; returns the folder."""
    from ..analysis.plots import plot_confusion

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_confusion_csv(confusion, report["class_names"], out / "confusion.csv")
    plot_confusion(confusion, report["class_names"], out / "confusion.png")
    return out
