"""Polyak/EMA weight averaging on top of `torch.optim.swa_utils.AveragedModel`."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


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

    def __call__(self, ema_params, model_params, num_averaged: torch.Tensor) -> None:
        decay = self.effective_decay(int(num_averaged))
        get_ema_multi_avg_fn(decay)(ema_params, model_params, num_averaged)


def build_ema(model: nn.Module, decay: float, warmup: bool = True) -> AveragedModel:
    """An AveragedModel of `model` (parameters and buffers, so BN statistics are averaged too).

    `ema.update_parameters(model)` after each optimizer step; `ema.module` is the averaged network.
    """
    return AveragedModel(model, multi_avg_fn=EMAUpdate(decay, warmup), use_buffers=True)
