"""Building blocks shared by the whole family.

Module attribute names (`conv`, `bn`, `branch1`...) follow torchvision and timm so that their
state_dicts load with the same keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

_size = int | tuple[int, int]


class ConvNormAct(nn.Module):
    """Conv2d, then optional BatchNorm, then ReLU.

    Without norm (`bn_eps=None`) the convolution carries a bias, as in the original GoogLeNet;
    with norm the bias is dropped since BN's shift replaces it. (N, in_ch, H, W) -> (N, out_ch, H', W').
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: _size, stride: _size = 1,
                 padding: _size | str = 0, bn_eps: float | None = 1e-3, act: bool = True) -> None:
        super().__init__()
        use_bn = bn_eps is not None
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=not use_bn)
        self.bn = nn.BatchNorm2d(out_ch, eps=bn_eps) if use_bn else None
        self.act = nn.ReLU(inplace=True) if act else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


def local_response_norm_fp32(x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
    """`F.local_response_norm` computed in float32 and returned in `x`'s dtype: its cross-channel average
    pool has no bf16/fp16 CPU kernel, and the squares it sums lose too much in bf16 anyway."""
    if x.dtype == torch.float32:
        return F.local_response_norm(x, size, alpha, beta, k)
    return F.local_response_norm(x.float(), size, alpha, beta, k).to(x.dtype)


# A leaf of fx graphs, so `inceptionnet.optimize` keeps the dtype check out of the traced graph.
fx.wrap("local_response_norm_fp32")


class LocalResponseNorm(nn.LocalResponseNorm):
    """nn.LocalResponseNorm that runs in float32 inside under bf16/fp16 (same module name and arguments)."""

    def forward(self, x: Tensor) -> Tensor:
        return local_response_norm_fp32(x, self.size, self.alpha, self.beta, self.k)


def lrn() -> LocalResponseNorm:
    """Local response normalisation as in GoogLeNet's Caffe model: size 5, alpha 1e-4, beta 0.75, k 1."""
    return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


class Branches(nn.Module):
    """Parallel branches over the same input, concatenated along channels.

    The branches are registered as `branch1`, `branch2`, ... (torchvision's names for GoogLeNet).
    (N, C, H, W) -> (N, sum of branch channels, H', W'); every branch must give the same H', W'.
    """

    def __init__(self, branches: Sequence[nn.Module]) -> None:
        super().__init__()
        for i, branch in enumerate(branches, 1):
            self.add_module(f"branch{i}", branch)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.children()], 1)


def inception_module(in_ch: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                     pool_proj: int, bn_eps: float | None = 1e-3, kernel_5x5: int = 5,
                     pool_ceil_mode: bool = False) -> Branches:
    """The Inception module with 1x1 reductions (GoogLeNet Fig. 2b).

    Branches: 1x1; 1x1 -> 3x3; 1x1 -> `kernel_5x5`x`kernel_5x5` (5 in the paper, 3 in torchvision's
    port); 3x3/1 max-pool -> 1x1 projection. Output channels: ch1x1 + ch3x3 + ch5x5 + pool_proj.
    """

    def conv(i: int, o: int, k: int) -> ConvNormAct:
        return ConvNormAct(i, o, k, padding=k // 2, bn_eps=bn_eps)

    return Branches([
        conv(in_ch, ch1x1, 1),
        nn.Sequential(conv(in_ch, ch3x3red, 1), conv(ch3x3red, ch3x3, 3)),
        nn.Sequential(conv(in_ch, ch5x5red, 1), conv(ch5x5red, ch5x5, kernel_5x5)),
        nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=pool_ceil_mode), conv(in_ch, pool_proj, 1)),
    ])


def naive_inception_module(in_ch: int, ch1x1: int, ch3x3: int, ch5x5: int,
                           bn_eps: float | None = None) -> Branches:
    """The naive Inception module (GoogLeNet Fig. 2a): 1x1, 3x3 and 5x5 convolutions and a 3x3/1
    max-pool side by side. Output channels: ch1x1 + ch3x3 + ch5x5 + in_ch (the pool passes all)."""
    return Branches([
        ConvNormAct(in_ch, ch1x1, 1, bn_eps=bn_eps),
        ConvNormAct(in_ch, ch3x3, 3, padding=1, bn_eps=bn_eps),
        ConvNormAct(in_ch, ch5x5, 5, padding=2, bn_eps=bn_eps),
        nn.MaxPool2d(3, stride=1, padding=1),
    ])


def factorized_conv(in_ch: int, out_ch: int, n: int, mid_ch: int | None = None,
                    bn_eps: float | None = 1e-3, order: str = "1xn") -> nn.Sequential:
    """An nxn convolution factorised into 1xn then nx1 (Inception-v3 Fig. 6), or nx1 then 1xn with
    `order="nx1"`; spatial size is kept. (N, in_ch, H, W) -> (N, out_ch, H, W)."""
    mid_ch = out_ch if mid_ch is None else mid_ch
    row = ((1, n), (0, n // 2))
    col = ((n, 1), (n // 2, 0))
    first, second = (row, col) if order == "1xn" else (col, row)
    return nn.Sequential(
        ConvNormAct(in_ch, mid_ch, first[0], padding=first[1], bn_eps=bn_eps),
        ConvNormAct(mid_ch, out_ch, second[0], padding=second[1], bn_eps=bn_eps),
    )
