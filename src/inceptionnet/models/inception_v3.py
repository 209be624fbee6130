"""Inception-v3 (Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer Vision"),
laid out key for key like torchvision's and timm's `inception_v3`, plus the pieces the rest of the
family shares: `NamedBranches` (branches of named layers, the way torchvision/timm name them) and
`InceptionAux` (the 17x17 auxiliary classifier of v3 and of the TF-slim v4/Inception-ResNet-v2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, InputSizeError
from .base import InceptionClassifier, init_weights, stage_info
from .blocks import ConvNormAct
from .registry import INCEPTION_MEAN, INCEPTION_STD, ModelSpec, Preprocess, register

# One step of a branch: a named layer, or a list of named layers that all read the step's input and
# whose outputs are concatenated (the split 1x3 / 3x1 ends of Inception-v3 Fig. 7 and v4's Inception-C).
Step = tuple[str, nn.Module] | list[tuple[str, nn.Module]]


class NamedBranches(nn.Module):
    """Parallel branches over the same input, concatenated along channels, each a chain of steps.

    Every layer is registered under its own name directly on this module, so a block holds the
    same state_dict keys as torchvision's and timm's hand-written blocks (`branch3x3dbl_2`,
    `branch1_1a`, ...). (N, C, H, W) -> (N, sum of the branches' channels, H', W').
    """

    def __init__(self, branches: Sequence[Sequence[Step]]) -> None:
        super().__init__()
        self.plan: list[list[tuple[str, ...]]] = []
        for branch in branches:
            chain = []
            for step in branch:
                group = step if isinstance(step, list) else [step]
                for name, layer in group:
                    self.add_module(name, layer)
                chain.append(tuple(name for name, _ in group))
            self.plan.append(chain)

    def forward(self, x: Tensor) -> Tensor:
        outputs = []
        for chain in self.plan:
            y = x
            for names in chain:
                parts = [self._modules[name](y) for name in names]
                y = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            outputs.append(y)
        return torch.cat(outputs, 1)


def conv(in_ch: int, out_ch: int, kernel_size: int | tuple[int, int], stride: int = 1,
         padding: int | tuple[int, int] = 0) -> ConvNormAct:
    """Conv (no bias) + BatchNorm (eps 1e-3, TF's) + ReLU, the unit of Inception-v3/v4/ResNet-v2."""
    return ConvNormAct(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bn_eps=1e-3)


def avg_pool_3x3() -> nn.AvgPool2d:
    """3x3/1 average pooling with padding counted, as torchvision's and timm's v3 (F.avg_pool2d)."""
    return nn.AvgPool2d(3, stride=1, padding=1)


def max_pool_3x3_s2() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2)


def inception_a(in_ch: int, pool_features: int) -> NamedBranches:
    """35x35 module (paper Fig. 5: 5x5 as in the released model, and a double 3x3)."""
    return NamedBranches([
        [("branch1x1", conv(in_ch, 64, 1))],
        [("branch5x5_1", conv(in_ch, 48, 1)), ("branch5x5_2", conv(48, 64, 5, padding=2))],
        [("branch3x3dbl_1", conv(in_ch, 64, 1)), ("branch3x3dbl_2", conv(64, 96, 3, padding=1)),
         ("branch3x3dbl_3", conv(96, 96, 3, padding=1))],
        [("pool", avg_pool_3x3()), ("branch_pool", conv(in_ch, pool_features, 1))],
    ])


def inception_b(in_ch: int) -> NamedBranches:
    """35x35 -> 17x17 grid reduction (paper Fig. 10)."""
    return NamedBranches([
        [("branch3x3", conv(in_ch, 384, 3, stride=2))],
        [("branch3x3dbl_1", conv(in_ch, 64, 1)), ("branch3x3dbl_2", conv(64, 96, 3, padding=1)),
         ("branch3x3dbl_3", conv(96, 96, 3, stride=2))],
        [("pool", max_pool_3x3_s2())],
    ])


def inception_c(in_ch: int, c7: int) -> NamedBranches:
    """17x17 module with 7x7 factorised into 1x7 and 7x1 (paper Fig. 6, n=7)."""
    row, col = {"kernel_size": (1, 7), "padding": (0, 3)}, {"kernel_size": (7, 1), "padding": (3, 0)}
    return NamedBranches([
        [("branch1x1", conv(in_ch, 192, 1))],
        [("branch7x7_1", conv(in_ch, c7, 1)), ("branch7x7_2", conv(c7, c7, **row)),
         ("branch7x7_3", conv(c7, 192, **col))],
        [("branch7x7dbl_1", conv(in_ch, c7, 1)), ("branch7x7dbl_2", conv(c7, c7, **col)),
         ("branch7x7dbl_3", conv(c7, c7, **row)), ("branch7x7dbl_4", conv(c7, c7, **col)),
         ("branch7x7dbl_5", conv(c7, 192, **row))],
        [("pool", avg_pool_3x3()), ("branch_pool", conv(in_ch, 192, 1))],
    ])


def inception_d(in_ch: int) -> NamedBranches:
    """17x17 -> 8x8 grid reduction."""
    return NamedBranches([
        [("branch3x3_1", conv(in_ch, 192, 1)), ("branch3x3_2", conv(192, 320, 3, stride=2))],
        [("branch7x7x3_1", conv(in_ch, 192, 1)), ("branch7x7x3_2", conv(192, 192, (1, 7), padding=(0, 3))),
         ("branch7x7x3_3", conv(192, 192, (7, 1), padding=(3, 0))), ("branch7x7x3_4", conv(192, 192, 3, stride=2))],
        [("pool", max_pool_3x3_s2())],
    ])


def split_1x3_3x1(prefix: str, in_ch: int, out_ch: int) -> list[tuple[str, nn.Module]]:
    """The expanded 8x8 filter bank ending (paper Fig. 7): 1x3 and 3x1 side by side, concatenated."""
    return [(prefix + "a", conv(in_ch, out_ch, (1, 3), padding=(0, 1))),
            (prefix + "b", conv(in_ch, out_ch, (3, 1), padding=(1, 0)))]


def inception_e(in_ch: int) -> NamedBranches:
    """8x8 module with expanded filter banks (paper Fig. 7)."""
    return NamedBranches([
        [("branch1x1", conv(in_ch, 320, 1))],
        [("branch3x3_1", conv(in_ch, 384, 1)), split_1x3_3x1("branch3x3_2", 384, 384)],
        [("branch3x3dbl_1", conv(in_ch, 448, 1)), ("branch3x3dbl_2", conv(448, 384, 3, padding=1)),
         split_1x3_3x1("branch3x3dbl_3", 384, 384)],
        [("pool", avg_pool_3x3()), ("branch_pool", conv(in_ch, 192, 1))],
    ])


class InceptionAux(nn.Module):
    """Auxiliary classifier on a 17x17 grid: avgpool 5x5/3 (VALID) -> 1x1 conv 128 -> 5x5 conv 768
    (the whole remaining 5x5 grid at 299 input) -> global average -> linear.

    Same layout as torchvision's/timm's v3 `AuxLogits` (keys conv0, conv1, fc) and as TF-slim's
    v4/Inception-ResNet-v2 aux head. (N, in_ch, >=17, >=17) -> (N, num_classes).
    """

    min_grid = 17  # avgpool 5/3 must leave at least 5x5 for the 5x5 conv

    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = conv(in_ch, 128, 1)
        self.conv1 = conv(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)
        x = self.conv1(self.conv0(x))
        # Larger inputs leave more than 1x1 here; averaging keeps the head usable at any size >= 299.
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def check_aux_grid(model: InceptionClassifier, grid: Tensor, min_input_size: int) -> None:
    """Raise `InputSizeError` when the grid an aux head reads is too small for it."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return
    if min(grid.shape[-2:]) < InceptionAux.min_grid:
        raise InputSizeError(f"{type(model).__name__} aux logits need inputs of at least {min_input_size}x"
                             f"{min_input_size} pixels")


class StagedInception(InceptionClassifier):
    """The forward shared by v3, v4 and Inception-ResNet: the trunk (`feature_layers()`), the optional
    aux head (attribute `AuxLogits`, None without aux) on the output of the layer named `aux_tap`,
    global average pooling, dropout and the linear layer named `head_name`.
    (N, C, H, W) -> (N, num_classes).
    """

    head_name = "fc"
    aux_tap = ""
    aux_min_input_size = 299
    AuxLogits: nn.Module | None

    def __init__(self, num_classes: int, in_chans: int, min_input_size: int, aux_logits: bool) -> None:
        super().__init__(num_classes, in_chans, min_input_size, aux_logits)
        if not aux_logits:  # reset_classifier then touches only the main head
            self.classifier_names = (self.head_name,)

    def _aux_head(self, grid: Tensor) -> Tensor:
        check_aux_grid(self, grid, self.aux_min_input_size)
        return self.AuxLogits(grid)

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        taps = {self.aux_tap: self._aux_head} if with_aux and self.AuxLogits is not None else {}
        x, aux = self.forward_trunk(x, taps)
        x = self.head_drop(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return getattr(self, self.head_name)(x), aux


class InceptionV3(StagedInception):
    """Inception-v3, key for key torchvision's `Inception3` and timm's `InceptionV3`.

    Input 299x299 (minimum 75x75; 299x299 for aux logits). (N, in_chans, H, W) -> (N, num_classes).
    Deliberate differences from the paper (Szegedy et al. 2015), all shared with the released
    TF/torchvision/timm weights:
    - the 35x35 modules keep one 5x5 branch next to the double 3x3 (the paper's Fig. 5 has only 3x3s);
    - the stem follows the released model (3x3 convs 32-32-64, pool, 1x1 80, 3x3 192, pool), not the
      table's "conv 3x3/1 73x73x80" row;
    - the aux head (on Mixed_6e) has a 5x5 conv and BN before its linear layer (the paper's
      "BN-auxiliary") and averages globally so it also works above 299;
    - dropout 0.2 before the classifier (TF-slim's keep 0.8; torchvision uses 0.5), `drop_rate` sets it.
    `transform_input=True` re-normalises ImageNet mean/std inputs to the [-1, 1] range the weights
    expect, exactly as torchvision's `transform_input` (which torchvision turns on for its weights).
    """

    classifier_names = ("fc", "AuxLogits.fc")
    aux_head_names = ("AuxLogits",)
    aux_tap = "Mixed_6e"
    feature_info = stage_info(("Conv2d_2b_3x3", 64, 2), ("Conv2d_4a_3x3", 192, 4), ("Mixed_5d", 288, 8),
                              ("Mixed_6e", 768, 16), ("Mixed_7c", 2048, 32))
    stage_names = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                   "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                   "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, in_chans: int = 3,
                 drop_rate: float = 0.2, transform_input: bool = False) -> None:
        super().__init__(num_classes, in_chans, min_input_size=75, aux_logits=aux_logits)
        if transform_input and in_chans != 3:
            raise ConfigError(f"transform_input re-normalises RGB images; it needs in_chans=3, got {in_chans}")
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = conv(in_chans, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = conv(32, 32, 3)
        self.Conv2d_2b_3x3 = conv(32, 64, 3, padding=1)
        self.maxpool1 = max_pool_3x3_s2()
        self.Conv2d_3b_1x1 = conv(64, 80, 1)
        self.Conv2d_4a_3x3 = conv(80, 192, 3)
        self.maxpool2 = max_pool_3x3_s2()
        self.Mixed_5b = inception_a(192, pool_features=32)
        self.Mixed_5c = inception_a(256, pool_features=64)
        self.Mixed_5d = inception_a(288, pool_features=64)
        self.Mixed_6a = inception_b(288)
        self.Mixed_6b = inception_c(768, c7=128)
        self.Mixed_6c = inception_c(768, c7=160)
        self.Mixed_6d = inception_c(768, c7=160)
        self.Mixed_6e = inception_c(768, c7=192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = inception_d(768)
        self.Mixed_7b = inception_e(1280)
        self.Mixed_7c = inception_e(2048)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(2048, num_classes)
        init_weights(self)

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in self.stage_names]

    def prepare_input(self, x: Tensor) -> Tensor:
        if not self.transform_input:
            return x
        # From ImageNet mean/std normalisation to (x - 0.5) / 0.5, channel by channel (torchvision's formula).
        scale = x.new_tensor([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5]).view(1, 3, 1, 1)
        shift = x.new_tensor([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5]).view(1, 3, 1, 1)
        return x * scale + shift


def _build(**kwargs) -> InceptionV3:
    return InceptionV3(**kwargs)


register(ModelSpec(
    name="inception_v3",
    builder=_build,
    paper="Szegedy et al. 2015, Rethinking the Inception Architecture for Computer Vision (arXiv:1512.00567)",
    default_input_size=299,
    min_input_size=75,
    # The released (TF-trained) weights expect [-1, 1] inputs: timm's preprocessing. torchvision's copy of
    # the same weights takes ImageNet mean/std (resize 342, crop 299) and converts with transform_input=True.
    preprocess=Preprocess(input_size=299, mean=INCEPTION_MEAN, std=INCEPTION_STD, interpolation="bicubic",
                          crop_pct=0.875),
    aux_heads=("AuxLogits",),
    aux_weight=0.4,
    aux_default=False,
    default_recipe="inception-v3-paper",
    peers={"torchvision": "inception_v3", "timm": "inception_v3"},
    description="Inception-v3, torchvision/timm weight-compatible; aux head after Mixed_6e",
))
