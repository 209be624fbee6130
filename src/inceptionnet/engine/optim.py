"""Optimizers and learning-rate schedules built from a `Recipe`.

`RMSpropTF` is RMSProp as TensorFlow (and the Inception-v3/v4 papers) ran it, which differs from
`torch.optim.RMSprop` in three ways: the mean square starts at 1 instead of 0, epsilon is added
inside the square root, and the learning rate is applied inside the momentum buffer.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..recipes import Recipe, body_lr_factor, lr_factor


class RMSpropTF(torch.optim.Optimizer):
    """TensorFlow-style RMSProp. Per parameter, with gradient g (plus `weight_decay` x p, L2 style):

        ms  = decay * ms + (1 - decay) * g^2          (ms starts at 1)
        mom = momentum * mom + lr * g / sqrt(ms + eps)
        p   = p - mom
    """

    def __init__(self, params: Iterable, lr: float = 0.045, decay: float = 0.9, eps: float = 1.0,
                 momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        if lr <= 0 or not 0 <= decay < 1 or eps < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid RMSpropTF settings: lr={lr}, decay={decay}, eps={eps}, "
                             f"momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, decay=decay, eps=eps, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                square_avg = state["square_avg"]
                square_avg.mul_(group["decay"]).addcmul_(grad, grad, value=1 - group["decay"])
                update = grad.div(square_avg.add(group["eps"]).sqrt_()).mul_(group["lr"])
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(update)
                p.sub_(buf)
        return loss


def classifier_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the parameters of the model's classifier layers (main and aux heads)."""
    ids = set()
    for name in getattr(model, "classifier_names", ()):
        try:
            module = model.get_submodule(name)
        except AttributeError:  # an aux head of a model built without aux heads
            continue
        ids.update(id(p) for p in module.parameters())
    return ids


def norm_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the parameters of `model`'s normalisation layers (BatchNorm, GroupNorm, LayerNorm, ...)."""
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    return {id(p) for m in model.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)}


def parameter_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    """Trainable parameters split into the heads (full lr) and the body (lr x `body_lr_scale`), each group
    named ("all", "head", "body") so the schedule can treat the body apart (`head_only_epochs`). With
    `norm_lr_scale`, each group's normalisation parameters form a group of the same name whose lr is scaled
    up by it and weight decay down, so that their decay per step is the others'."""
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.body_lr_scale == 1.0 and recipe.head_only_epochs == 0:
        groups = [{"params": params, "lr": recipe.lr, "name": "all"}]
    else:
        head_ids = classifier_parameter_ids(model)
        groups = [{"params": [p for p in params if id(p) in head_ids], "lr": recipe.lr, "name": "head"},
                  {"params": [p for p in params if id(p) not in head_ids], "lr": recipe.lr * recipe.body_lr_scale,
                   "name": "body"}]
    if recipe.norm_lr_scale != 1.0:
        norm_ids, scale = norm_parameter_ids(model), recipe.norm_lr_scale
        groups = [split for group in groups for split in (
            {**group, "params": [p for p in group["params"] if id(p) not in norm_ids]},
            {**group, "params": [p for p in group["params"] if id(p) in norm_ids], "lr": group["lr"] * scale,
             "weight_decay": recipe.weight_decay / scale})]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over `model`'s trainable parameters (torch's fused kernels where they apply)."""
    groups = parameter_groups(model, recipe)
    if recipe.optimizer == "rmsprop_tf":
        return RMSpropTF(groups, lr=recipe.lr, decay=recipe.rmsprop_decay, eps=recipe.rmsprop_eps,
                         momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    fused = _fused_kwargs(groups)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                               weight_decay=recipe.weight_decay, **fused)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr, weight_decay=recipe.weight_decay, **fused)
    return torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay, **fused)


def _fused_kwargs(groups: list[dict]) -> dict:
    """{"fused": True} when every parameter is a floating tensor on one CPU or CUDA device: the fused update
    is one pass over each tensor instead of one per operation (Adam on GoogLeNet's 13 M parameters on two
    CPU cores: 7 ms instead of 39 ms a step)."""
    params = [p for group in groups for p in group["params"]]
    devices = {p.device for p in params}
    if len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda") and all(p.is_floating_point() for p in params):
        return {"fused": True}
    return {}


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int) -> LambdaLR:
    """A LambdaLR stepped once per optimizer step, following `recipes.lr_factor` (the body group:
    `recipes.body_lr_factor`, which holds it at 0 for the head-only epochs)."""
    def factor(group: dict):
        rule = body_lr_factor if group.get("name") == "body" else lr_factor
        return lambda step: rule(recipe, step, steps_per_epoch)

    return LambdaLR(optimizer, [factor(group) for group in optimizer.param_groups])
