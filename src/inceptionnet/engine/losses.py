"""Training loss with auxiliary heads: total = main + aux_weight x each aux loss."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class AuxLoss(nn.Module):
    """Cross-entropy (with optional label smoothing) on the main logits plus `aux_weight` times the
    same loss on each auxiliary head's logits.

    Call with `(logits (N, K), aux_logits sequence of (N, K), targets (N,))`; returns
    `(total, main)` scalars so the log can show the main loss next to the total.
    """

    def __init__(self, aux_weight: float = 0.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.aux_weight = aux_weight
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, logits: Tensor, aux_logits: Sequence[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        main = self.criterion(logits, targets)
        total = main
        if self.aux_weight:
            for aux in aux_logits:
                total = total + self.aux_weight * self.criterion(aux, targets)
        return total, main
