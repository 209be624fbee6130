"""The compact Inception networks for CIFAR: the TF2 course's "Inception10" and a net for fast training.

The TF2 course builds it in Keras; this is the same network in PyTorch, with these deliberate differences:
the model returns logits (the seed's Dense layer applies softmax, and losses here take logits), and
convolutions followed by BN carry no bias (BN's shift replaces it; the seed's Keras Conv2D keeps one).
BN eps is Keras's 1e-3. The seed's InceptionBlk is kept exactly: every branch has `ch` channels, and
a strided block applies its stride in each branch's 1x1 convolution (after the 3x3/1 pool in the pool
branch), with Keras "same" padding (none for the strided 1x1s, k//2 for the rest).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import InceptionClassifier, init_weights, stage_info
from .blocks import Branches, ConvNormAct, inception_module
from .registry import CIFAR_PREPROCESS, register_model

DEFAULT_BLOCKS = 2
TF2_COURSE = "The TF2 course (TensorFlow 2.1 notes, Inception10), after Szegedy et al. 2014 (arXiv:1409.4842)"


def seed_inception_block(in_ch: int, ch: int, stride: int = 1) -> Branches:
    """The TF2 course's InceptionBlk: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3/1 max-pool -> 1x1, each branch `ch`
    channels, `stride` applied in the 1x1 convolutions. (N, in_ch, H, W) -> (N, 4*ch, ceil(H/s), ceil(W/s))."""

    def conv(i: int, o: int, k: int, s: int = 1) -> ConvNormAct:
        return ConvNormAct(i, o, k, stride=s, padding=k // 2)

    return Branches.numbered(
        conv(in_ch, ch, 1, stride),
        [conv(in_ch, ch, 1, stride), conv(ch, ch, 3)],
        [conv(in_ch, ch, 1, stride), conv(ch, ch, 5)],
        [nn.MaxPool2d(3, stride=1, padding=1), conv(in_ch, ch, 1, stride)],
        start=1,
    )


class InceptionCifar(InceptionClassifier):
    """The TF2 course's Inception10: 3x3 conv-BN-ReLU stem of `init_ch`, then `num_blocks` blocks of two
    Inception blocks (stride 2, then 1) whose branch width doubles per block, global average pool,
    linear. (N, in_chans, H, W) -> (N, num_classes); H, W = 32 for CIFAR.
    """

    classifier_names = ("fc",)

    def __init__(self, num_classes: int = 10, aux_logits: bool = False, in_chans: int = 3,
                 num_blocks: int = DEFAULT_BLOCKS, init_ch: int = 16) -> None:
        super().__init__(num_classes, in_chans, aux_logits=False, min_input_size=self.min_input_for(num_blocks))
        self.stem = ConvNormAct(in_chans, init_ch, 3, padding=1)
        blocks, in_ch, ch = [], init_ch, init_ch
        for _ in range(num_blocks):
            for stride in (2, 1):
                blocks.append(seed_inception_block(in_ch, ch, stride))
                in_ch = 4 * ch
            ch *= 2
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        # Stages: the stem, then the end of each pair of blocks (stride 2 per pair).
        self.feature_info = stage_info(("stem", init_ch, 1), *(
            (f"blocks.{2 * i + 1}", 4 * init_ch * 2 ** i, 2 ** (i + 1)) for i in range(num_blocks)))
        init_weights(self)

    @classmethod
    def min_input_for(cls, num_blocks: int = DEFAULT_BLOCKS, **arch_kwargs) -> int:
        """The total stride (each block pair halves the grid), where the last block is 1x1."""
        return 2 ** num_blocks

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem), *((f"blocks.{i}", block) for i, block in enumerate(self.blocks))]

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        x = self.forward_trunk(x)[0]
        return self.fc(torch.flatten(self.avgpool(x), 1)), []


register_model(
    "inception_cifar", InceptionCifar, TF2_COURSE,
    "The TF2 course's compact Inception (Inception10) for 32x32 inputs: 16-channel stem, 2 blocks of 2 "
    "Inception blocks (stride 2, 1), widths 16 and 32 per branch, global pool, linear.",
    preprocess=CIFAR_PREPROCESS, recipe="cifar",
)


def fast_group(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two Inception modules with a 2x2 max-pool between them (airbench's conv-pool-conv group, each conv an
    Inception module): (N, in_ch, H, W) -> (N, out_ch, H // 2, W // 2). Each module's branches take 1/4 (1x1),
    1/2 (1x1 -> 3x3) and 1/8 + 1/8 (1x1 -> 3x3, pool -> 1x1) of `out_ch`."""

    def module(i: int) -> Branches:
        return inception_module(i, out_ch // 4, out_ch // 4, out_ch // 2, out_ch // 8, out_ch // 8, out_ch // 8,
                                kernel_5x5=3)

    return nn.Sequential(module(in_ch), nn.MaxPool2d(2), module(out_ch))


TTA_MODES = ("none", "flip", "flip-translate")


class PatchWhitening(nn.Module):
    """A `kernel_size` x `kernel_size` patch convolution that whitens its input's patches (airbench's first
    layer), then ReLU. Its filters are the eigenvectors of the patch covariance scaled by 1/sqrt(eigenvalue +
    `eps`), each also negated so that the ReLU keeps every direction; `init_from_data` sets them from training
    images and they are not trained (only the bias is). (N, C, H, W) -> (N, 2*C*k*k, H-k+1, W-k+1).
    """

    def __init__(self, in_ch: int, kernel_size: int = 2, eps: float = 5e-4) -> None:
        super().__init__()
        directions = in_ch * kernel_size ** 2
        self.conv = nn.Conv2d(in_ch, 2 * directions, kernel_size, bias=True)
        self.conv.weight.requires_grad_(False)
        self.act = nn.ReLU(inplace=True)
        self.eps = eps

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """Set the filters from `images` (N, C, H, W) on the model's input scale, and zero the bias."""
        channels, k = self.conv.in_channels, self.conv.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels * k * k)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        # Strongest direction first; row i of `filters` is eigenvector i over (C, k, k) as a conv weight.
        filters = (eigenvectors.T / (eigenvalues + self.eps).sqrt()[:, None]).flip(0)
        filters = filters.reshape(-1, channels, k, k)
        self.conv.weight.copy_(torch.cat([filters, -filters]))
        self.conv.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class InceptionCifarFast(InceptionClassifier):
    """An Inception network for time-to-accuracy on CIFAR-10 (after airbench's lessons, built from GoogLeNet's
    Inception modules): a whitening 2x2 patch convolution (32x32 -> 31x31, 24 channels, filters set from the
    training images by `init_from_data`), three groups of two Inception modules around a 2x2 max-pool
    (31 -> 15 -> 7 -> 3), global max-pool, linear head whose logits are scaled by `logit_scale`.
    With the default `widths` (96, 384, 512): 1.56 M parameters, 0.108 GMAC a 32x32 image (forward, one view).

    BN layers learn their shift only (their scale stays 1, as in airbench). `tta` in eval mode: "flip" averages
    the logits of the image and its mirror, "flip-translate" (airbench's level 2) also those of the image
    moved by one pixel up-left and down-right (reflected borders), mirrored too: 6 views in one pass.
    (N, in_chans, H, W) -> (N, num_classes); H, W >= 16.
    """

    classifier_names = ("fc",)
    min_input_size = 16  # the patch stem loses a pixel, then three 2x2 pools: 16 -> 15 -> 7 -> 3 -> 1

    def __init__(self, num_classes: int = 10, aux_logits: bool = False, in_chans: int = 3,
                 widths: tuple[int, int, int] = (96, 384, 512), tta: str = "flip-translate",
                 logit_scale: float = 1 / 9) -> None:
        super().__init__(num_classes, in_chans, aux_logits=False)
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
        self.stem = PatchWhitening(in_chans)
        groups, in_ch = [], self.stem.conv.out_channels
        for width in widths:
            groups.append(fast_group(in_ch, width))
            in_ch = width
        self.groups = nn.Sequential(*groups)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self.tta = tta
        self.logit_scale = logit_scale
        # Stages: the patch stem (32 -> 31), then each group (a 2x2 max-pool each: 15, 7, 3).
        self.feature_info = stage_info(("stem", self.stem.conv.out_channels, 1), *(
            (f"groups.{i}", width, 2 ** (i + 1)) for i, width in enumerate(widths)))
        init_weights(self)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.requires_grad_(False)

    def init_from_data(self, images: Tensor) -> None:
        """Data-dependent initialisation from training images (N, C, H, W) on the model's input scale: the
        whitening filters of the stem."""
        self.stem.init_from_data(images)

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem), *((f"groups.{i}", group) for i, group in enumerate(self.groups))]

    def logits(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, num_classes), without test-time augmentation."""
        x = self.fc(torch.flatten(self.pool(self.forward_trunk(x)[0]), 1))
        # An identity head (num_classes 0) returns the pooled features as they are.
        return x * self.logit_scale if self.num_classes > 0 else x

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        if self.tta == "none" or self.training:
            return self.logits(x), []
        # Every view in one pass: each layer runs once (graph passes and exporters expect that), and
        # eval-mode BN makes the views independent.
        views, weights = [x], [1.0]
        if self.tta == "flip-translate":
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            views, weights = [x, padded[..., :-2, :-2], padded[..., 2:, 2:]], [0.5, 0.25, 0.25]
        views = [v for view in views for v in (view, view.flip(-1))]
        weights = [weight / 2 for weight in weights for _ in range(2)]
        per_view = self.logits(torch.cat(views)).unflatten(0, (len(views), -1))
        return sum(weight * per_view[i] for i, weight in enumerate(weights)), []


register_model(
    "inception_cifar_fast", InceptionCifarFast,
    "Szegedy et al. 2014 (arXiv:1409.4842) Inception modules; the training lessons of airbench "
    "(Jordan 2024, arXiv:2404.00498)",
    "Inception net for fast CIFAR-10 training: whitening 2x2 patch stem, 3 groups of 2 Inception modules "
    "(widths 96/384/512) around max-pools, max-pool head, flip and translate TTA in eval mode.",
    preprocess=CIFAR_PREPROCESS, recipe="cifar-fast",
)
