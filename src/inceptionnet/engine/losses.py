"""Training loss with auxiliary heads: total = main + aux_weight x each aux loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class AuxLoss(nn.Module):
    """Cross-entropy (with optional label smoothing and per-class weights `class_weights` (K,)) on the main
    logits plus `aux_weight` times the same loss on each auxiliary head's logits.

    Call with `(logits (N, K), aux_logits sequence of (N, K), targets)`, targets being class indices (N,) or
    soft targets (N, K) (MixUp/CutMix); returns `(total, main)` scalars so the log can show the main loss next
    to the total.
    """

    def __init__(self, aux_weight: float = 0.0, label_smoothing: float = 0.0,
                 class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.aux_weight = aux_weight
        self.criterion = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)

    def forward(self, logits: Tensor, aux_logits: Sequence[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        main = self.criterion(logits, targets)
        total = main
        if self.aux_weight:
            for aux in aux_logits:
                total = total + self.aux_weight * self.criterion(aux, targets)
        return total, main
