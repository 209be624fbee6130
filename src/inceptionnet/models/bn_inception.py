"""BN-Inception (Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift", Figure 5): GoogLeNet with BN after every convolution, each 5x5
replaced by two 3x3, and the stride-2 modules 3c and 4e.

Two honestly separate layouts of the same network:
- `bn_inception`: the paper's table, built from the shared blocks (nested `Branches`).
- `bn_inception_caffe`: key for key the Caffe-converted checkpoint of the `pretrainedmodels` package
  (Cadene's `bninception`: flat keys `conv1_7x7_s2`, `conv1_7x7_s2_bn`, `inception_3a_1x1`, ...,
  `last_linear`), BGR 0-255 input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from .base import InceptionClassifier, init_weights, stage_info
from .blocks import Branches, ConvNormAct, Plan, run_branches
from .registry import Preprocess, register_model


class ModuleRow(NamedTuple):
    """One Inception row of the paper's Figure 5 table. `ch1x1 == 0` and `pool_proj == 0` mark the
    stride-2 modules (no 1x1 branch; max-pool passed through); `pool` is "avg" or "max"."""

    name: str
    in_ch: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    dbl_red: int
    dbl: int
    pool: str
    pool_proj: int

    @property
    def stride(self) -> int:
        return 2 if self.pool_proj == 0 else 1

    @property
    def out_ch(self) -> int:
        passed = self.in_ch if self.pool_proj == 0 else self.pool_proj
        return self.ch1x1 + self.ch3x3 + self.dbl + passed


# The table's filter counts; in_ch follows from the previous row. The table's "output size" column
# says 576 for 4c/4d and 1024 for 4e, but its own filter counts add up to 608 and 1056, which is
# what the Caffe model (and so every released checkpoint) uses.
TABLE = (
    ModuleRow("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    ModuleRow("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    ModuleRow("3c", 320, 0, 128, 160, 64, 96, "max", 0),
    ModuleRow("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    ModuleRow("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    ModuleRow("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    ModuleRow("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    ModuleRow("4e", 608, 0, 128, 192, 192, 256, "max", 0),
    ModuleRow("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    ModuleRow("5b", 1024, 352, 192, 320, 192, 224, "max", 128),
)
FEATURES = 1024
MIN_INPUT_SIZE = 7  # smallest input every layer accepts; every larger size runs too (checked by the tests)


class PassThroughPool(nn.Module):
    """The 3x3/2 max-pool of the stride-2 modules 3c and 4e: Caffe's ceil-mode pooling on an input
    padded by one -inf row and column at the bottom/right.

    On even grids (224 input: 28 and 14) the padding never wins a max, so this is exactly Caffe's
    pool. On odd grids Caffe's pool gives one row/column fewer than the modules' 3x3/2 convolutions
    (padding 1) and the concatenation fails; the padding makes the sizes agree at every input size.
    (N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2)).
    """

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, 1, 0, 1), value=float("-inf"))
        return F.max_pool2d(x, 3, stride=2, ceil_mode=True)


def pool_layer(row: ModuleRow) -> nn.Module:
    """The pooling branch's pool: 3x3/2 max for the stride-2 modules, else 3x3/1 avg or max."""
    if row.stride == 2:
        return PassThroughPool()
    if row.pool == "max":
        return nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
    return nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True)


def stem_pool() -> nn.MaxPool2d:
    # ceil_mode keeps the table's sizes (112 -> 56 -> 28) without padding, as in Caffe.
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


class BNInception(InceptionClassifier):
    """BN-Inception as in the paper's Figure 5 table, built from the shared blocks.

    224x224 input (minimum 7x7): conv 7x7/2 -> 112x112x64, max-pool -> 56x56x64, 1x1 64 and
    3x3 192 -> 56x56x192, max-pool -> 28x28x192, 3a, 3b, 3c (stride 2) -> 14x14x576, 4a-4d, 4e
    (stride 2) -> 7x7x1056, 5a, 5b -> 7x7x1024, global average pooling, linear `fc`.
    (N, in_chans, H, W) -> (N, num_classes). Stages are `stem`, `inception_3a` ... `inception_5b`.

    Deliberate choices where the paper is silent or loose: module widths as the table's filter
    counts (4c/4d give 608 and 4e 1056 channels, not the 576/1024 of its size column); a plain 7x7
    first conv (the table's asterisk hints at a separable one that no release uses); ceil-mode
    pooling (Caffe's); no LRN, no aux heads and no dropout (`drop_rate=0`), as the paper's
    "Modified BN-Inception" removes dropout; BN eps 1e-5 and bias-free convolutions.
    """

    classifier_names = ("fc",)
    min_input_size = MIN_INPUT_SIZE
    feature_info = stage_info(("stem.0", 64, 2), ("stem.3", 192, 4), ("inception_3b", 320, 8),
                              ("inception_4d", 608, 16), ("inception_5b", FEATURES, 32))

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, in_chans: int = 3,
                 drop_rate: float = 0.0) -> None:
        super().__init__(num_classes, in_chans, aux_logits=False)

        def cbr(i: int, o: int, k: int, stride: int = 1) -> ConvNormAct:
            return ConvNormAct(i, o, k, stride=stride, padding=k // 2, bn_eps=1e-5)

        self.stem = nn.Sequential(cbr(in_chans, 64, 7, 2), stem_pool(), cbr(64, 64, 1), cbr(64, 192, 3), stem_pool())
        for row in TABLE:
            reduce_3x3 = nn.Sequential(cbr(row.in_ch, row.ch3x3red, 1), cbr(row.ch3x3red, row.ch3x3, 3, row.stride))
            double_3x3 = nn.Sequential(cbr(row.in_ch, row.dbl_red, 1), cbr(row.dbl_red, row.dbl, 3),
                                       cbr(row.dbl, row.dbl, 3, row.stride))
            if row.stride == 2:
                module = Branches.numbered(reduce_3x3, double_3x3, pool_layer(row), start=1)
            else:
                module = Branches.numbered(cbr(row.in_ch, row.ch1x1, 1), reduce_3x3, double_3x3,
                                           [pool_layer(row), cbr(row.in_ch, row.pool_proj, 1)], start=1)
            self.add_module(f"inception_{row.name}", module)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(FEATURES, num_classes)
        init_weights(self)

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        """Stem layers `stem.0` ... `stem.4`, then `inception_3a` ... `inception_5b`; the trunk ends at
        (N, 1024, H/32, W/32) (7x7 at 224)."""
        stem = [(f"stem.{i}", layer) for i, layer in enumerate(self.stem)]
        return stem + [(f"inception_{row.name}", getattr(self, f"inception_{row.name}")) for row in TABLE]

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        x = F.adaptive_avg_pool2d(self.forward_trunk(x)[0], 1).flatten(1)
        return self.fc(self.head_drop(x)), []


class BNInceptionCaffe(InceptionClassifier):
    """BN-Inception laid out like the Caffe-converted checkpoint in `pretrainedmodels` (Cadene's
    `bninception`, 11,295,240 parameters): the same network as `BNInception`, with that file's flat
    key names, so its state_dict loads with no renaming.

    Differences from `BNInception`, all from the checkpoint: convolutions carry a bias next to BN;
    input is BGR in [0, 255] minus the mean (104, 117, 128), std 1; the classifier is `last_linear`.
    Two deliberate differences from Cadene's module, both identical at 224x224 and there only to let
    other sizes run (minimum 7x7): the final 7x7/1 average pooling is a global average, and the
    pass-through pools of 3c/4e are `PassThroughPool` (Caffe's pool wherever Caffe's network runs).
    (N, in_chans, H, W) -> (N, num_classes).
    """

    classifier_names = ("last_linear",)
    min_input_size = MIN_INPUT_SIZE
    feature_info = stage_info(("conv1_7x7_s2", 64, 2), ("conv2_3x3", 192, 4), ("inception_3b", 320, 8),
                              ("inception_4d", 608, 16), ("inception_5b", FEATURES, 32))

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, in_chans: int = 3) -> None:
        super().__init__(num_classes, in_chans, aux_logits=False)
        # Each stage is a `Plan` (branches of layer names) over layers registered on self, keeping the flat keys.
        self.plan: list[Plan] = [
            [[self._conv("conv1_7x7_s2", in_chans, 64, 7, 2)]],
            [[self._layer("pool1_3x3_s2", stem_pool())]],
            [[self._conv("conv2_3x3_reduce", 64, 64, 1)]],
            [[self._conv("conv2_3x3", 64, 192, 3)]],
            [[self._layer("pool2_3x3_s2", stem_pool())]],
        ]
        for row in TABLE:
            p = f"inception_{row.name}_"
            branches = [
                [self._conv(p + "3x3_reduce", row.in_ch, row.ch3x3red, 1),
                 self._conv(p + "3x3", row.ch3x3red, row.ch3x3, 3, row.stride)],
                [self._conv(p + "double_3x3_reduce", row.in_ch, row.dbl_red, 1),
                 self._conv(p + "double_3x3_1", row.dbl_red, row.dbl, 3),
                 self._conv(p + "double_3x3_2", row.dbl, row.dbl, 3, row.stride)],
                [self._layer(p + "pool", pool_layer(row))],
            ]
            if row.stride == 1:
                branches.insert(0, [self._conv(p + "1x1", row.in_ch, row.ch1x1, 1)])
                branches[-1].append(self._conv(p + "pool_proj", row.in_ch, row.pool_proj, 1))
            self.plan.append(branches)
        self.last_linear = nn.Linear(FEATURES, num_classes)
        init_weights(self)

    def _layer(self, name: str, layer: nn.Module) -> tuple[str]:
        self.add_module(name, layer)
        return (name,)

    def _conv(self, name: str, in_ch: int, out_ch: int, k: int, stride: int = 1) -> tuple[str]:
        """Register Caffe's conv (with bias) `name` and its BN `name_bn` (eps 1e-5); ReLU follows in forward."""
        self.add_module(name, nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=k // 2))
        self.add_module(name + "_bn", nn.BatchNorm2d(out_ch, eps=1e-5))
        return (name,)

    def _run(self, name: str, x: Tensor) -> Tensor:
        layer = self._modules[name]
        if isinstance(layer, nn.Conv2d):
            return F.relu(self._modules[name + "_bn"](layer(x)), inplace=True)
        return layer(x)

    def feature_layers(self) -> list[tuple[str, Callable[[Tensor], Tensor]]]:
        """One entry per stage of the plan, named by its first layer (`conv1_7x7_s2`, ...) or its
        module (`inception_3a`, ...); the trunk ends at (N, 1024, H/32, W/32) (7x7 at 224)."""
        names = [stage[0][0][0] for stage in self.plan[:5]] + [f"inception_{row.name}" for row in TABLE]
        stages = zip(names, self.plan, strict=True)
        return [(name, functools.partial(run_branches, stage, self._run)) for name, stage in stages]

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        x = F.adaptive_avg_pool2d(self.forward_trunk(x)[0], 1).flatten(1)
        return self.last_linear(x), []


_PAPER = ("Ioffe & Szegedy 2015, Batch Normalization: Accelerating Deep Network Training by Reducing Internal "
          "Covariate Shift (arXiv:1502.03167), Figure 5")


register_model("bn_inception", BNInception, _PAPER, "BN-Inception (Inception-v2) as in the paper's table",
               recipe="googlenet-paper")
register_model(
    "bn_inception_caffe", BNInceptionCaffe, _PAPER,
    "BN-Inception keyed like the Caffe-converted checkpoint of pretrainedmodels (Cadene)",
    # Caffe's convention: BGR channels in [0, 255], the mean listed in that (B, G, R) order, no scaling.
    preprocess=Preprocess(mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), input_range=255.0, channel_order="BGR"),
    peers={"cadene": "bninception"},
)
