"""Polyak/EMA weight averaging on top of `torch.optim.swa_utils.AveragedModel`."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class EMAUpdate:
    """The `multi_avg_fn` of an EMA: decay `decay`, or with `warmup` the lower
    min(decay, (1 + n) / (10 + n)) after n updates, so that a short run does not average over
    its random initialisation."""

    def __init__(self, decay: float, warmup: bool) -> None:
        self.decay = decay
        self.warmup = warmup

    def effective_decay(self, num_averaged: int) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + num_averaged) / (10 + num_averaged))

    @torch.no_grad()
    def __call__(self, ema_params, model_params, num_averaged: torch.Tensor) -> None:
        if not ema_params[0].is_floating_point():
            # Integer buffers (BN's num_batches_tracked) are counts, not weights: take the model's. Averaging
            # them as torch's EMA does costs four tensor operations per BN layer and step.
            torch._foreach_copy_(ema_params, model_params)
            return
        torch._foreach_lerp_(ema_params, model_params, 1.0 - self.effective_decay(int(num_averaged)))


def build_ema(model: nn.Module, decay: float, warmup: bool = True) -> AveragedModel:
    """An AveragedModel of `model` (parameters and buffers, so BN statistics are averaged too).

    `ema.update_parameters(model)` after each optimizer step; `ema.module` is the averaged network.
    """
    return AveragedModel(model, multi_avg_fn=EMAUpdate(decay, warmup), use_buffers=True)
