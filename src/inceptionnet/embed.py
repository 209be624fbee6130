"""`inceptionnet.embed`: one pooled feature vector per image of a folder, from a checkpoint or published
weights, written as a NumPy .npy matrix with a CSV of the image paths next to it."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import torch

from . import artifacts
from .errors import ConfigError, DataError
from .evaluate.ensemble import load_member
from .fileio import atomic_write
from .runtime import resolve_device


def embed_images(checkpoint: str | os.PathLike, inputs: str | os.PathLike, device: str | None = None,
                 batch_size: int = 16) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Embed every image under `inputs` with the model of `checkpoint` (a checkpoint, run folder, .safetensors or
    weights tag), using its own preprocessing: the global average of `forward_features`. Returns the (N, D) float32
    embeddings, the N paths in row order, and (path, reason) for each file that could not be read."""
    from .data.images import BadImageError, load_image
    from .data.transforms import build_eval_transform
    from .predict import list_images

    files = list_images(inputs)
    if not files:
        raise DataError(f"{inputs}: no image files found")
    loaded = artifacts.load_model(checkpoint)
    if loaded.kind == "onnx":
        raise ConfigError(f"{checkpoint}: embed needs a PyTorch model (its forward_features); an ONNX file gives "
                          "logits only")
    member = load_member(loaded, resolve_device(device), optimize=False)
    transform = build_eval_transform(member.preprocess)
    rows, paths, skipped = [], [], []
    for start in range(0, len(files), max(1, batch_size)):
        tensors = []
        for path in files[start:start + max(1, batch_size)]:
            try:
                tensors.append(transform(load_image(path)))
                paths.append(str(path))
            except BadImageError as e:
                skipped.append((str(path), e.reason))
        if tensors:
            with torch.inference_mode():
                features = member.model.forward_features(torch.stack(tensors).to(member.device))
            rows.append(features.float().mean((2, 3)).cpu().numpy())
    if not rows:
        raise DataError(f"{inputs}: none of the {len(files)} image files could be read")
    return np.concatenate(rows), paths, skipped


def write_embeddings(embeddings: np.ndarray, paths: list[str], out: str | os.PathLike) -> tuple[Path, Path]:
    """Write `embeddings` to `out` (.npy) and the paths, one per row, to the .csv beside it, atomically."""
    out = Path(out)
    if out.suffix != ".npy":
        out = out.with_suffix(out.suffix + ".npy")
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["row", "path"])
    writer.writerows(enumerate(paths))
    csv_path = out.with_suffix(".csv")
    def save_matrix(tmp) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a temporary name
            np.save(f, embeddings)

    atomic_write(out, save_matrix)
    atomic_write(csv_path, lambda tmp: Path(tmp).write_text(table.getvalue()))
    return out, csv_path
