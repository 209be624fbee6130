"""Class imbalance: class counts of a training set and inverse-frequency loss weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

# Largest class over smallest at which `balance="auto"` weights the loss.
IMBALANCE_RATIO = 3.0


def class_counts(dataset: Dataset, num_classes: int) -> list[int]:
    """Images per class of an image-folder dataset (`samples` of (path, label)) or of one with `targets`."""
    labels = [label for _, label in dataset.samples] if hasattr(dataset, "samples") else list(dataset.targets)
    counts = [0] * num_classes
    for label in labels:
        counts[int(label)] += 1
    return counts


def class_weights(counts: Sequence[int], mode: str) -> tuple[Tensor | None, str]:
    """Loss weights (num_classes,) for `counts` under `mode` ("auto", "loss", "none") and a note saying what
    was decided. Weights are inverse class frequency, scaled so their image-weighted mean is 1 (the loss keeps
    its scale); "auto" weights only when the largest class has IMBALANCE_RATIO x the smallest's images."""
    ratio = max(counts) / max(min(counts), 1)
    if mode == "none" or (mode == "auto" and ratio < IMBALANCE_RATIO):
        return None, f"classes {ratio:.1f}x imbalanced: unweighted loss"
    freq = torch.tensor(counts, dtype=torch.float32).clamp(min=1)
    weights = freq.sum() / (len(counts) * freq)
    return weights, f"classes {ratio:.1f}x imbalanced: loss weighted by inverse class frequency"
