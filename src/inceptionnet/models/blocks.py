"""Building blocks shared by the whole family.

Module attribute names (`conv`, `bn`, `branch1`...) follow torchvision and timm so that their
state_dicts load with the same keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


# One step of a branch: a named layer, or a list of named layers that all read the step's input and
# whose outputs are concatenated (the split 1x3 / 3x1 ends of Inception-v3 Fig. 7 and v4's Inception-C).
Step = tuple[str, nn.Module] | list[tuple[str, nn.Module]]
# Branches by layer names: each branch a chain of steps, each step the names whose outputs are concatenated.
Plan = list[list[tuple[str, ...]]]


def run_branches(plan: Plan, apply: Callable[[str, Tensor], Tensor], x: Tensor) -> Tensor:
    """Run every branch of `plan` on `x` (`apply(name, tensor)` runs one named layer) and concatenate the
    branch outputs along channels: (N, C, H, W) -> (N, sum of the branches' channels, H', W')."""
    outputs = []
    for chain in plan:
        y = x
        for names in chain:
            parts = [apply(name, y) for name in names]
            y = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        outputs.append(y)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)


class Branches(nn.Module):
    """Parallel branches over the same input, concatenated along channels, each a chain of `Step`s.

    Every layer is registered under its own name directly on this module, so a block holds the same
    state_dict keys as the hand-written blocks of torchvision and timm (`branch3x3dbl_2`, `branch1_1a`,
    `branch2.0`, ...). (N, C, H, W) -> (N, sum of the branches' channels, H', W'); every branch must give
    the same H', W'.
    """

    def __init__(self, branches: Sequence[Sequence[Step]]) -> None:
        super().__init__()
        self.plan: Plan = []
        for branch in branches:
            chain = []
            for step in branch:
                group = step if isinstance(step, list) else [step]
                for name, layer in group:
                    self.add_module(name, layer)
                chain.append(tuple(name for name, _ in group))
            self.plan.append(chain)

    @classmethod
    def numbered(cls, *branches: nn.Module | list[nn.Module], start: int = 0) -> Branches:
        """Branches named `branch{start}`, `branch{start + 1}`, ... (see `numbered`)."""
        return cls(numbered(*branches, start=start))

    def forward(self, x: Tensor) -> Tensor:
        return run_branches(self.plan, self._apply_layer, x)

    def _apply_layer(self, name: str, x: Tensor) -> Tensor:
        return self._modules[name](x)


def numbered(*branches: nn.Module | list[nn.Module], start: int = 0) -> list[list[Step]]:
    """One-step branches named `branch0`, `branch1`, ... (timm's and TF-slim's names; torchvision's GoogLeNet
    counts from `start=1`); a list becomes a Sequential, so its layers are keyed `branchI.0`, `branchI.1`..."""
    return [[(f"branch{i}", nn.Sequential(*b) if isinstance(b, list) else b)]
            for i, b in enumerate(branches, start)]


def inception_module(in_ch: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                     pool_proj: int, bn_eps: float | None = 1e-3, kernel_5x5: int = 5,
                     pool_ceil_mode: bool = False) -> Branches:
    """The Inception module with 1x1 reductions (GoogLeNet Fig. 2b).

    Branches: 1x1; 1x1 -> 3x3; 1x1 -> `kernel_5x5`x`kernel_5x5` (5 in the paper, 3 in torchvision's
    port); 3x3/1 max-pool -> 1x1 projection. Output channels: ch1x1 + ch3x3 + ch5x5 + pool_proj.
    """

    def conv(i: int, o: int, k: int) -> ConvNormAct:
        return ConvNormAct(i, o, k, padding=k // 2, bn_eps=bn_eps)

    return Branches.numbered(
        conv(in_ch, ch1x1, 1),
        [conv(in_ch, ch3x3red, 1), conv(ch3x3red, ch3x3, 3)],
        [conv(in_ch, ch5x5red, 1), conv(ch5x5red, ch5x5, kernel_5x5)],
        [nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=pool_ceil_mode), conv(in_ch, pool_proj, 1)],
        start=1,
    )


def naive_inception_module(in_ch: int, ch1x1: int, ch3x3: int, ch5x5: int,
                           bn_eps: float | None = None) -> Branches:
    """The naive Inception module (GoogLeNet Fig. 2a): 1x1, 3x3 and 5x5 convolutions and a 3x3/1
    max-pool side by side. Output channels: ch1x1 + ch3x3 + ch5x5 + in_ch (the pool passes all)."""
    return Branches.numbered(
        ConvNormAct(in_ch, ch1x1, 1, bn_eps=bn_eps),
        ConvNormAct(in_ch, ch3x3, 3, padding=1, bn_eps=bn_eps),
        ConvNormAct(in_ch, ch5x5, 5, padding=2, bn_eps=bn_eps),
        nn.MaxPool2d(3, stride=1, padding=1),
        start=1,
    )


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


# --- the TF-slim units of Inception-v3, Inception-v4 and Inception-ResNet ---------------------------------

def basic_conv(in_ch: int, out_ch: int, kernel_size: _size, stride: _size = 1, padding: _size = 0) -> ConvNormAct:
    """Conv (no bias) + BatchNorm (eps 1e-3, TF's) + ReLU, the unit of Inception-v3/v4/ResNet-v2
    (torchvision's BasicConv2d). (N, in_ch, H, W) -> (N, out_ch, H', W')."""
    return ConvNormAct(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bn_eps=1e-3)


def avg_pool_3x3() -> nn.AvgPool2d:
    """3x3/1 average pooling with padding counted, as torchvision's and timm's v3 (F.avg_pool2d)."""
    return nn.AvgPool2d(3, stride=1, padding=1)


def avg_pool_3x3_same() -> nn.AvgPool2d:
    """3x3/1 average pooling that ignores the padding, as TF's SAME pooling (timm's v4 and IR-v2)."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def max_pool_3x3_s2() -> nn.MaxPool2d:
    """3x3/2 max pooling without padding (TF's VALID): (N, C, H, W) -> (N, C, (H-1)//2, (W-1)//2)."""
    return nn.MaxPool2d(3, stride=2)


def split_1x3_3x1(prefix: str, in_ch: int, out_ch: int) -> list[tuple[str, nn.Module]]:
    """The expanded 8x8 filter bank ending (Inception-v3 Fig. 7): 1x3 and 3x1 side by side, concatenated
    (a `Step` of `Branches`, layers `{prefix}a` and `{prefix}b`). (N, in_ch, H, W) -> (N, 2*out_ch, H, W)."""
    return [(prefix + "a", basic_conv(in_ch, out_ch, (1, 3), padding=(0, 1))),
            (prefix + "b", basic_conv(in_ch, out_ch, (3, 1), padding=(1, 0)))]


def tf_stem_convs(in_chans: int) -> list[ConvNormAct]:
    """The three 3x3 convolutions Inception-v3, v4 and Inception-ResNet start with: 3x3/2 conv 32, 3x3 conv 32,
    3x3 conv 64 (padded). (N, in_chans, 299, 299) -> (N, 32, 149, 149) -> (N, 32, 147, 147) -> (N, 64, 147, 147)."""
    return [basic_conv(in_chans, 32, 3, stride=2), basic_conv(32, 32, 3), basic_conv(32, 64, 3, padding=1)]


def tf_stem(in_chans: int) -> list[nn.Module]:
    """Inception-v3's stem (Inception-ResNet's up to its last layer): `tf_stem_convs`, 3x3/2 max-pool, 1x1 conv 80,
    3x3 conv 192, 3x3/2 max-pool. (N, in_chans, 299, 299) -> 73x73x64 -> 73x73x80 -> 71x71x192 -> (N, 192, 35, 35)."""
    return [*tf_stem_convs(in_chans), max_pool_3x3_s2(), basic_conv(64, 80, 1), basic_conv(80, 192, 3),
            max_pool_3x3_s2()]


def reduction_a(in_ch: int, k: int, l: int, m: int, n: int) -> Branches:
    """35x35 -> 17x17 Reduction-A (Inception-v4 Fig. 7) with the paper's filter counts k, l, m, n (Table 1):
    (N, in_ch, H, W) -> (N, in_ch + n + m, (H-1)//2, (W-1)//2). Shared by v4 and both Inception-ResNets."""
    return Branches.numbered(
        basic_conv(in_ch, n, 3, stride=2),
        [basic_conv(in_ch, k, 1), basic_conv(k, l, 3, padding=1), basic_conv(l, m, 3, stride=2)],
        max_pool_3x3_s2(),
    )


class InceptionAux(nn.Module):
    """Auxiliary classifier on a 17x17 grid: avgpool 5x5/3 (VALID) -> 1x1 conv 128 -> 5x5 conv 768
    (the whole remaining 5x5 grid at 299 input) -> global average -> linear.

    Same layout as torchvision's/timm's v3 `AuxLogits` (keys conv0, conv1, fc) and as TF-slim's
    v4/Inception-ResNet-v2 aux head. (N, in_ch, >=17, >=17) -> (N, num_classes).
    """

    min_grid = 17  # avgpool 5/3 must leave at least 5x5 for the 5x5 conv

    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = basic_conv(in_ch, 128, 1)
        self.conv1 = basic_conv(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)
        x = self.conv1(self.conv0(x))
        # Larger inputs leave more than 1x1 here; averaging keeps the head usable at any size >= 299.
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)
