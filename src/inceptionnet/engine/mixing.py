"""MixUp / CutMix on training batches (torchvision.transforms.v2), giving soft targets for the loss."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms import v2

from ..recipes import Recipe


class BatchMixer:
    """With probability `recipe.mix_prob`, MixUp (alpha `mixup_alpha`) or CutMix (alpha `cutmix_alpha`), one of
    the enabled ones drawn at random per batch. Call with images (N, C, H, W) and integer targets (N,); returns
    images (N, C, H, W) and soft targets (N, num_classes) that sum to 1 per row. Draws from torch's global RNG,
    which checkpoints save, so a resumed run mixes as the uninterrupted one would."""

    def __init__(self, recipe: Recipe, num_classes: int) -> None:
        self.num_classes = num_classes
        self.prob = recipe.mix_prob
        mixers = []
        if recipe.mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=recipe.mixup_alpha, num_classes=num_classes))
        if recipe.cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=recipe.cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if mixers else None

    def __call__(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        if self.mix is not None and images.shape[0] > 1 and torch.rand(1).item() < self.prob:
            return self.mix(images, targets)
        return images, torch.nn.functional.one_hot(targets, self.num_classes).to(images.dtype)


def build_mixer(recipe: Recipe, num_classes: int) -> BatchMixer | None:
    """A `BatchMixer` when the recipe mixes (an alpha above 0 and mix_prob above 0), else None."""
    if recipe.mix_prob > 0 and (recipe.mixup_alpha > 0 or recipe.cutmix_alpha > 0):
        return BatchMixer(recipe, num_classes)
    return None
