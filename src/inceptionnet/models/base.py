"""The model contract every registered network follows (DESIGN.md, "Model contract")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InputSizeError


class InceptionClassifier(nn.Module):
    """Base class: plain-Tensor forward, explicit aux logits, input checks, head replacement.

    Subclasses implement `forward_head(x, with_aux) -> (logits, aux_list)` and list their linear
    classifier layers (dotted module names) in `classifier_names`; aux heads are listed in
    `aux_head_names` and must only exist when built with `aux_logits=True`.
    """

    classifier_names: tuple[str, ...] = ()
    aux_head_names: tuple[str, ...] = ()

    def __init__(self, num_classes: int, in_chans: int, min_input_size: int, aux_logits: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.min_input_size = min_input_size
        self.aux_logits = aux_logits

    def forward(self, x: Tensor, with_aux: bool = False):
        """(N, C, H, W) -> (N, num_classes) logits, or `(logits, aux_tuple)` if `with_aux`."""
        self.check_input(x)
        logits, aux = self.forward_head(x, with_aux and self.aux_logits)
        if with_aux:
            return logits, tuple(aux)
        return logits

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        raise NotImplementedError

    def check_input(self, x: Tensor) -> None:
        """Raise `InputSizeError` for a tensor this model cannot take, before any layer sees it."""
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return
        if x.dim() != 4:
            raise InputSizeError(f"{type(self).__name__} expects a 4-D (N, C, H, W) batch, got shape "
                                 f"{tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise InputSizeError(f"{type(self).__name__} was built for {self.in_chans} input channels, "
                                 f"got {x.shape[1]}")
        h, w = x.shape[-2:]
        if h < self.min_input_size or w < self.min_input_size:
            raise InputSizeError(f"{type(self).__name__} needs inputs of at least {self.min_input_size}x"
                                 f"{self.min_input_size} pixels, got {h}x{w}")

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every classifier layer (main and aux heads) with a fresh one of `num_classes`
        outputs; 0 gives an identity head that returns pooled features."""
        for name in self.classifier_names:
            parent_name, _, child = name.rpartition(".")
            parent = self.get_submodule(parent_name) if parent_name else self
            old = getattr(parent, child, None)
            if old is None:  # an aux head of a model built without aux heads
                continue
            new = nn.Linear(old.in_features, num_classes) if num_classes > 0 else nn.Identity()
            if num_classes > 0:
                init_linear(new)
            setattr(parent, child, new.to(next(self.parameters()).device))
        self.num_classes = num_classes

    def aux_parameters(self):
        """Parameters of the aux heads (empty when built without them)."""
        for name in self.aux_head_names:
            module = getattr(self, name, None)
            if module is not None:
                yield from module.parameters()


def init_linear(layer: nn.Linear, std: float = 0.01) -> None:
    nn.init.normal_(layer.weight, 0.0, std)
    nn.init.zeros_(layer.bias)


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions, unit BN, small normal linears: torch-only and fast."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_linear(m)
