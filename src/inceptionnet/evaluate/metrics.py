"""Classification metrics accumulated batch by batch: top-1/top-5, loss, per-class precision/recall/F1,
confusion matrix. Nothing but counters is kept, so memory does not grow with the dataset."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..fileio import atomic_write

# Probabilities are clamped before the log so that a confidently wrong crop average gives a finite loss.
_MIN_PROB = 1e-12


class ClassificationMetrics:
    """Accumulates predictions of a C-class classifier and reports the metrics of all of them.

    `update(probs, targets)` takes (N, C) class probabilities (rows sum to 1: softmax, or the average of
    softmaxes over crops or models) and (N,) integer targets.
    """

    def __init__(self, num_classes: int, topk: int = 5) -> None:
        self.num_classes = num_classes
        self.topk = min(topk, num_classes)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.count = 0
        self.correct_top1 = 0
        self.correct_topk = 0
        self.loss_sum = 0.0

    def update(self, probs: Tensor, targets: Tensor) -> None:
        """Add a batch: `probs` (N, C) probabilities, `targets` (N,) class indices."""
        probs = probs.detach().float().cpu()
        targets = targets.detach().long().cpu()
        top = probs.topk(self.topk, dim=1).indices
        self.correct_top1 += int((top[:, 0] == targets).sum())
        self.correct_topk += int((top == targets[:, None]).any(dim=1).sum())
        picked = probs.gather(1, targets[:, None]).squeeze(1)
        self.loss_sum += float(-picked.clamp_min(_MIN_PROB).log().sum())
        self.count += len(targets)
        flat = targets * self.num_classes + top[:, 0]
        self.confusion += torch.bincount(flat, minlength=self.num_classes ** 2).view(self.num_classes, -1)

    def per_class(self) -> dict[str, Tensor]:
        """Precision, recall, F1 (float (C,), 0 where undefined) and support (int (C,)) of each class."""
        m = self.confusion.double()
        true_pos = m.diagonal()
        predicted = m.sum(0)
        support = m.sum(1)
        precision = torch.where(predicted > 0, true_pos / predicted.clamp_min(1), torch.zeros_like(true_pos))
        recall = torch.where(support > 0, true_pos / support.clamp_min(1), torch.zeros_like(true_pos))
        denom = precision + recall
        f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), torch.zeros_like(denom))
        return {"precision": precision, "recall": recall, "f1": f1, "support": self.confusion.sum(1)}

    def compute(self, class_names: Sequence[str]) -> dict:
        """Every metric as plain JSON-ready values; accuracies are fractions in [0, 1]."""
        n = max(self.count, 1)
        stats = self.per_class()
        per_class = [
            {"class": name, "precision": float(stats["precision"][i]), "recall": float(stats["recall"][i]),
             "f1": float(stats["f1"][i]), "support": int(stats["support"][i])}
            for i, name in enumerate(class_names)
        ]
        present = stats["support"] > 0
        return {
            "images": self.count,
            "top1": self.correct_top1 / n,
            f"top{self.topk}": self.correct_topk / n,
            "loss": self.loss_sum / n,
            "macro_precision": float(stats["precision"][present].mean()) if present.any() else 0.0,
            "macro_recall": float(stats["recall"][present].mean()) if present.any() else 0.0,
            "macro_f1": float(stats["f1"][present].mean()) if present.any() else 0.0,
            "per_class": per_class,
        }


def write_confusion_csv(matrix: Tensor, class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Write the (C, C) count matrix as CSV: header `true\\predicted, <classes>`, one row per true class."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["true\\predicted", *class_names])
            for name, row in zip(class_names, matrix.tolist(), strict=True):
                writer.writerow([name, *row])

    return atomic_write(path, write)
