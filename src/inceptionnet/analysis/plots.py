"""Training curves and confusion matrices as PNG files (matplotlib Agg, no display needed).

Figures are built with `matplotlib.figure.Figure` directly rather than pyplot, so no global
backend is selected and nothing leaks between calls; files are written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..fileio import atomic_write


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    FigureCanvasAgg(fig)  # attaches an Agg canvas so savefig needs no backend
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))


def _series(rows: Sequence[Mapping[str, object]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of `key` over the rows that have a number for it."""
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if value is None or value == "":
            continue
        value = float(value)
        if math.isfinite(value):
            xs.append(float(row["epoch"]))
            ys.append(value)
    return xs, ys


def plot_curves(rows: Sequence[Mapping[str, object]], path: str | os.PathLike) -> Path:
    """Plot accuracy (left) and loss (right), train vs val, per epoch, into the PNG `path`.

    `rows` are per-epoch dicts with `epoch` and any of `train_acc`, `val_acc` (fractions 0-1, drawn in
    percent), `train_loss`, `val_loss`; missing or empty values are left out of the lines.
    """
    fig = Figure(figsize=(11, 4))
    for ax, metric, title in zip(fig.subplots(1, 2), ("acc", "loss"), ("Accuracy (%)", "Loss"), strict=True):
        for split, style in (("train", "-o"), ("val", "-s")):
            xs, ys = _series(rows, f"{split}_{metric}")
            if metric == "acc":
                ys = [100.0 * y for y in ys]
            if xs:
                ax.plot(xs, ys, style, markersize=3, label=f"{split.replace('val', 'validation')}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return _save(fig, path)


def plot_confusion(matrix, class_names: Sequence[str], path: str | os.PathLike, normalize: bool = True) -> Path:
    """Draw a confusion matrix (rows = true class, columns = predicted) into the PNG `path`.

    `matrix` is a (C, C) array-like of counts (Tensor, ndarray or nested lists) and `class_names` its C
    labels. With `normalize`, colours show each row as a fraction of its true class; cells are annotated
    with the counts when C <= 30.
    """
    import numpy as np

    counts = np.asarray(matrix.cpu() if hasattr(matrix, "cpu") else matrix, dtype=np.float64)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {counts.shape} does not match {n} class names")
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    side = min(max(4.0, 0.45 * n + 2), 30.0)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 60:  # beyond that the names cannot be read; the axes then show class indices
        ticks = range(n)
        ax.set_xticks(ticks, labels=class_names, rotation=90 if n > 8 else 45, ha="right" if n <= 8 else "center")
        ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > 0.5 * (shown.max() or 1) else "black")
    return _save(fig, path)
