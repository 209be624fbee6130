"""`inceptionnet.predict`: top-k classes of images or folders with a checkpoint's own preprocessing,
optionally with a Grad-CAM overlay per image. Unreadable files become error entries, never a crash."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from . import artifacts
from ._callable import make_module_callable
from .data.images import BadImageError, load_image
from .errors import ConfigError, DataError
from .evaluate.ensemble import Member, accelerate, load_member
from .runtime import resolve_device

# From this many images on, predict builds the fused inference graph by default.
OPTIMIZE_MIN_IMAGES = 64


def list_images(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The image files named by `inputs`: files as given, folders searched recursively (sorted) for image
    extensions. A path that does not exist is a DataError."""
    from .data.folder import IMAGE_EXTENSIONS

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item}: no such file or folder")
    return files


def _cam_name(path: Path, roots: Sequence[Path]) -> str:
    """A flat, collision-free PNG name for `path`'s overlay: its path below the input folder, '/' -> '__'."""
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return "__".join(path.relative_to(root).with_suffix("").parts) + ".cam.png"
    return path.stem + ".cam.png"


def _top(member: Member, probs: torch.Tensor, topk: int) -> list[dict]:
    values, indices = probs.topk(min(topk, probs.numel()))
    return [{"class": member.class_names[i], "index": int(i), "probability": float(p)}
            for p, i in zip(values.tolist(), indices.tolist(), strict=True)]


def iter_predictions(checkpoint: str | os.PathLike, inputs: str | os.PathLike | Sequence[str | os.PathLike],
                     topk: int = 5, cam_dir: str | os.PathLike | None = None, device: str | None = None,
                     batch_size: int = 16, optimize: bool | None = None, precision: str = "auto") -> Iterator[dict]:
    """Yield one result per image, in order: `{"path", "predictions": [{"class", "index", "probability"}...],
    "precision"}` (plus `"cam"`, the overlay PNG, with `cam_dir`), or `{"path", "error"}` for a file that
    cannot be read.

    Images go through the model `batch_size` at a time, so a folder of any size streams. `optimize` runs
    `inceptionnet.optimize`'s float32 inference graph (same probabilities within float rounding); None (auto)
    does so for OPTIMIZE_MIN_IMAGES images or more, since building the graph takes seconds that a handful of
    images never wins back. `precision` (auto/fp32/bf16/fp16) applies to that graph, `auto` measuring bf16
    against fp32 on the first images where the device has native bf16. Grad-CAM (`cam_dir`) always runs the
    plain float32 model, whose layers it hooks and differentiates.
    `checkpoint` is anything `inceptionnet.artifacts.load_model` takes: a checkpoint, run folder, .safetensors,
    weights tag, or an .onnx (from `export` or `quantize`), which runs in onnxruntime and has no Grad-CAM.
    """
    from .analysis.gradcam import GradCAM
    from .data.transforms import build_eval_transform

    if topk < 1:
        raise DataError(f"--topk must be at least 1, got {topk}")
    loaded = artifacts.load_model(checkpoint)
    if cam_dir is not None and loaded.kind == "onnx":
        raise ConfigError(f"--cam needs a PyTorch model: Grad-CAM differentiates the network, which {checkpoint} "
                          "(ONNX) cannot")
    files = list_images(inputs)
    roots = [Path(p) for p in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
    if optimize is None:
        optimize = len(files) >= OPTIMIZE_MIN_IMAGES
    optimize = optimize and cam_dir is None
    member = load_member(loaded, resolve_device(device), optimize=False, precision="fp32" if optimize else precision)
    transform = build_eval_transform(member.preprocess)
    if optimize:
        member = accelerate(member, precision, lambda: _first_images(files, transform), len(files))
    cam = GradCAM(member.model) if cam_dir is not None else None
    for start in range(0, len(files), max(1, batch_size)):
        chunk, results, tensors = files[start:start + max(1, batch_size)], [], []
        for path in chunk:
            try:
                tensors.append(transform(load_image(path)))
                results.append({"path": str(path)})
            except BadImageError as e:
                results.append({"path": str(path), "error": e.reason})
        if tensors:
            _predict_batch(member, torch.stack(tensors), [r for r in results if "error" not in r], topk, cam,
                           cam_dir, roots)
        yield from results


def _predict_batch(member: Member, images: torch.Tensor, results: list[dict], topk: int, cam, cam_dir,
                   roots: Sequence[Path]) -> None:
    """Fill in `results` (one per (C, S, S) image of `images`): top-k predictions and precision, and with `cam`
    (a GradCAM of the member's model) the overlay PNG written into `cam_dir`."""
    from .analysis.gradcam import model_input_to_image, save_overlay

    x = images.to(member.device)
    if cam is None:
        with torch.inference_mode():
            logits = member.model(x)
        heatmaps = None
    else:
        heatmaps, logits = cam(x)
    probs = member.logits_to_probs(logits).cpu()
    for i, result in enumerate(results):
        result["predictions"] = _top(member, probs[i], topk)
        result["precision"] = member.precision.name
        if heatmaps is not None:
            target = Path(cam_dir) / _cam_name(Path(result["path"]), roots)
            image = model_input_to_image(x[i].cpu(), member.preprocess)
            result["cam"] = str(save_overlay(image, heatmaps[i].cpu(), target))


def _first_images(files: Sequence[Path], transform, count: int = 16) -> torch.Tensor | None:
    """The first `count` readable images of `files` as model inputs (N, C, S, S), or None."""

    tensors = []
    for path in files:
        try:
            tensors.append(transform(load_image(path)))
        except BadImageError:
            continue
        if len(tensors) == count:
            break
    return torch.stack(tensors) if tensors else None


def predict(checkpoint: str | os.PathLike, inputs: str | os.PathLike | Sequence[str | os.PathLike], topk: int = 5,
            cam_dir: str | os.PathLike | None = None, device: str | None = None, batch_size: int = 16,
            optimize: bool | None = None, precision: str = "auto") -> list[dict]:
    """All results of `iter_predictions` as a list (one dict per image, errors included)."""
    return list(iter_predictions(checkpoint, inputs, topk, cam_dir, device, batch_size, optimize, precision))


make_module_callable(__name__, predict)
