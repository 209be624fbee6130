"""`inceptionnet.evaluate`: a checkpoint (or an ensemble) on an image folder, CIFAR-10 or the embedded
synthetic set, with centre, TenCrop or GoogLeNet's 144-crop testing; writes report.json and the
confusion matrix (CSV and PNG)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .. import artifacts
from ..errors import DataError
from ..fileio import atomic_write_text
from ..runtime import resolve_device
from .ensemble import Member, accelerate, average_probabilities, load_members
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


def load_eval_data(data: str | os.PathLike | None, transform, split: str = "auto", val_split: float = 0.2,
                   seed: int = 0) -> EvalData:
    """Pick the evaluation images of `data`.

    `split="auto"`: the test split of a train/val[/test] folder or CIFAR-10 when it has one, else its val
    split; the val split of the synthetic set (`data=None`); every image of a plain folder of class folders.
    "val"/"test" ask for that split (a plain folder is split like training does, with `val_split`, `seed`;
    "val" of a folder with a test split is still its val split); "all" takes every image of a plain folder.
    """
    from ..data.datasets import build_datasets, has_predefined_splits
    from ..data.folder import ImageDataset, scan_image_folder

    if split not in SPLITS:
        raise DataError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = None if data is None else Path(data)
    if root is not None and not root.exists():
        raise DataError(f"--data {root}: no such folder")
    plain_folder = root is not None and not has_predefined_splits(root)
    if split == "all" or (split == "auto" and plain_folder):
        if not plain_folder:
            raise DataError(f"--split all needs a folder of class folders; {root} holds predefined splits")
        scan = scan_image_folder(root)
        return EvalData(ImageDataset(scan.samples, transform), scan.class_names, list(scan.skipped), f"{root} (all)")
    sets = build_datasets(None if root is None else str(root), val_split, seed, transform, transform)
    name = "test" if split == "test" or (split == "auto" and sets.test is not None) else "val"
    dataset = sets.test if name == "test" else sets.val
    if dataset is None:
        raise DataError(f"--split test: {sets.source} has no test split")
    return EvalData(dataset, list(sets.class_names), list(sets.skipped), f"{sets.source} ({name})")


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


def training_data(meta: dict, data: str | os.PathLike | None, val_split: float | None,
                  seed: int | None) -> tuple[str | os.PathLike | None, float, int]:
    """(data, val_split, seed) with each None filled in from the training run the model file `meta` describes
    (its config's options), else the training defaults: the synthetic set, 0.2, 0."""
    config = meta.get("config")
    options = config.get("options", {}) if isinstance(config, dict) else {}
    if data is None:
        data = options.get("data")
    if val_split is None:
        val_split = float(options.get("val_split", 0.2))
    if seed is None:
        seed = int(options.get("seed", 0))
    return data, val_split, seed


def evaluate(checkpoint: str | os.PathLike, data: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
             tta: str = "center", ensemble: Sequence[str | os.PathLike] = (), batch_size: int = 64,
             device: str | None = None, workers: int = 0, split: str = "auto", val_split: float | None = None,
             seed: int | None = None, quiet: bool = True, optimize: bool = True, precision: str = "auto") -> dict:
    """Evaluate `checkpoint` (plus the `ensemble` checkpoints, softmax averaged over models) on `data`.

    `data`, `val_split` and `seed` default to those the checkpoint was trained with, so that without
    them a run is evaluated on its own validation split.

    `tta` is "center", "10crop" or "144crop" (softmax averaged over each image's crops); `batch_size`
    bounds the crops per forward pass. Images are streamed, so memory does not grow with the dataset.
    `optimize` runs each model as `inceptionnet.optimize`'s inference graph (faster; in float32 the same
    outputs within float rounding); False runs the plain float32 models. `precision` (auto/fp32/bf16/fp16)
    is resolved per model by `inceptionnet.runtime.choose_inference_precision`, `auto` measuring fp32 against
    bf16 on the first images where the device has native bf16. `checkpoint` and `ensemble` take whatever
    `inceptionnet.artifacts.load_model` does: checkpoints, run folders, .safetensors and weights tags, and .onnx
    files (run in onnxruntime on the CPU, as written by `export` or `quantize`).
    Returns the report (also written to `out`/report.json with confusion.csv and confusion.png when
    `out` is given): top1, top5, loss, macro and per-class precision/recall/F1, confusion matrix, timing.
    """
    check_mode(tta)
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    first = artifacts.load_model(checkpoint)
    if data is None and split == "auto":
        # The training data: evaluate on what training held out, never on the images it learned from.
        split = "val"
    # A model file's metadata holds the training run's config, exported files included.
    data, val_split, seed = training_data(first.meta, data, val_split, seed)
    members = load_members([first, *ensemble], resolve_device(device), optimize=False,
                           precision="fp32" if optimize else precision)
    transform = PerMemberTransform([MultiCropTransform(tta, m.preprocess) for m in members])
    eval_data = load_eval_data(data, transform, split, val_split, seed)
    if optimize:
        crops = len(eval_data.dataset) * crops_per_image(tta)
        members = [accelerate(m, precision, lambda i=i: first_crops(eval_data.dataset, i), crops) for i, m in
                   enumerate(members)]
    to_model_label = _label_map(eval_data.class_names, members[0].class_names, eval_data.description)

    metrics = ClassificationMetrics(len(members[0].class_names))
    skipped = list(eval_data.skipped)
    start = time.perf_counter()
    for probs, targets, batch_skipped in iter_probabilities(members, eval_data.dataset, tta, batch_size, workers,
                                                             quiet):
        skipped += batch_skipped
        if len(targets):
            metrics.update(probs, to_model_label[targets])
    seconds = time.perf_counter() - start
    if metrics.count == 0:
        raise DataError(f"{eval_data.description}: no readable images to evaluate")
    report = build_report(members, eval_data, tta, metrics, skipped, seconds, optimize)
    if out is not None:
        write_report(report, metrics.confusion, out)
    return report


def build_report(members: Sequence[Member], eval_data: EvalData, tta: str, metrics: ClassificationMetrics,
                 skipped: list[tuple[str, str]], seconds: float, optimized: bool) -> dict:
    """The report of an evaluation of `members` on `eval_data` that took `seconds`: its metrics, the confusion
    matrix, the files skipped, timing, device, whether the models ran `optimized` and in which precision."""
    class_names = members[0].class_names
    return {
        "checkpoints": [m.source for m in members],
        "models": [getattr(getattr(m.model, "spec", None), "name", None) or getattr(m.model, "name", None)
                   or type(m.model).__name__ for m in members],
        "data": eval_data.description,
        "tta": tta,
        "crops_per_image": crops_per_image(tta),
        **metrics.compute(class_names),
        "confusion": metrics.confusion.tolist(),
        "class_names": class_names,
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "seconds": seconds,
        "seconds_per_image": seconds / metrics.count,
        "device": str(members[0].device),
        "optimized": optimized,
        "precision": [{"name": m.precision.name, "reason": m.precision.reason, **m.precision.measured}
                      for m in members],
    }


def first_crops(dataset: Dataset, member: int, count: int = 16) -> Tensor | None:
    """Up to `count` (C, S, S) crops of `member` from the first readable images of `dataset`, stacked:
    the real inputs an `auto` precision is measured on (None when no image is readable)."""
    from ..data.folder import SkippedSample

    crops = []
    for index in range(len(dataset)):
        item = dataset[index]
        if not isinstance(item, SkippedSample):
            crops += list(item[0][member])
        if len(crops) >= count:
            break
    return torch.stack(crops[:count]) if crops else None


def iter_probabilities(members: Sequence[Member], dataset: Dataset, tta: str, batch_size: int = 64, workers: int = 0,
                       quiet: bool = True) -> Iterator[tuple[Tensor, Tensor, list[tuple[str, str]]]]:
    """Stream `dataset` (items: (tuple of per-member crops, label), as made by `PerMemberTransform`) and
    yield, per batch, (probs (B, classes) averaged over crops and members, targets (B,), skipped files).

    A batch holds batch_size // crops images (at least one), and each member sees at most `batch_size`
    crops per forward pass, so memory stays bounded whatever the dataset size.
    """
    from ..data.loaders import build_loader

    images_per_step = max(1, batch_size // crops_per_image(tta))
    loader = build_loader(dataset, images_per_step, shuffle=False, workers=workers, seed=0, seed_items=False)
    for batch in _progress(loader, len(loader), quiet):
        if len(batch.targets) == 0:
            yield torch.empty(0, len(members[0].class_names)), batch.targets, list(batch.skipped)
            continue
        per_member = [m.crop_probabilities(x, batch_size) for m, x in zip(members, batch.images, strict=True)]
        yield average_probabilities(per_member), batch.targets, list(batch.skipped)


def write_report(report: dict, confusion: Tensor, out: str | os.PathLike) -> Path:
    """Write report.json, confusion.csv and confusion.png into the folder `out`; returns the folder."""
    from ..analysis.plots import plot_confusion

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_confusion_csv(confusion, report["class_names"], out / "confusion.csv")
    plot_confusion(confusion, report["class_names"], out / "confusion.png")
    return out
