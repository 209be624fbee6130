"""Inception-ResNet-v1 and -v2 (Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact
of Residual Connections on Learning"). v2 is laid out key for key like timm's `inception_resnet_v2`
(the TF-slim release); v1 follows the paper's figures."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import Tensor, nn

from .base import StagedInception, init_weights, stage_info
from .blocks import (
    Branches,
    InceptionAux,
    Step,
    avg_pool_3x3_same,
    factorized_conv,
    max_pool_3x3_s2,
    numbered,
    reduction_a,
    tf_stem,
)
from .blocks import basic_conv as conv
from .registry import INCEPTION_PREPROCESS, register_model

# Residual scales of the released Inception-ResNet-v2 (35x35, 17x17, 8x8 blocks); the paper scales
# residuals by 0.1-0.3 "before adding them to the accumulated layer activations".
DEFAULT_SCALES = (0.17, 0.10, 0.20)


class ResidualInception(Branches):
    """A residual Inception block: branches, concatenated, a linear 1x1 conv (with bias, no BN) back
    to `channels`, scaled by `scale`, added to the input, then ReLU unless `activate=False`.
    (N, channels, H, W) -> (N, channels, H, W). Keys as timm's Block35/Block17/Block8."""

    def __init__(self, branches: Sequence[Sequence[Step]], concat_ch: int, channels: int, scale: float,
                 activate: bool = True) -> None:
        super().__init__(branches)
        self.conv2d = nn.Conv2d(concat_ch, channels, 1)
        self.scale = scale
        self.act = nn.ReLU() if activate else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2d(super().forward(x)) * self.scale + x)


def block35(channels: int, c1x1: int, c3x3: tuple[int, int], c3x3dbl: tuple[int, int, int],
            scale: float) -> ResidualInception:
    """35x35 Inception-ResNet-A (Figs. 10 and 16): 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3."""
    r, d1, d2 = c3x3dbl
    branches = numbered(
        conv(channels, c1x1, 1),
        [conv(channels, c3x3[0], 1), conv(c3x3[0], c3x3[1], 3, padding=1)],
        [conv(channels, r, 1), conv(r, d1, 3, padding=1), conv(d1, d2, 3, padding=1)],
    )
    return ResidualInception(branches, c1x1 + c3x3[1] + d2, channels, scale)


def block_factorized(channels: int, c1x1: int, cnxn: tuple[int, int, int], n: int, scale: float,
                     activate: bool = True) -> ResidualInception:
    """17x17 Inception-ResNet-B (n=7: 1x7 then 7x1) or 8x8 Inception-ResNet-C (n=3: 1x3 then 3x1):
    branches 1x1 and 1x1 -> 1xn -> nx1 with `cnxn` = (reduce, middle, out) channels."""
    r, mid, out = cnxn
    branches = numbered(
        conv(channels, c1x1, 1),
        [conv(channels, r, 1), *factorized_conv(r, out, n, mid_ch=mid)],
    )
    return ResidualInception(branches, c1x1 + out, channels, scale, activate)


def reduction_b(in_ch: int, widths: tuple[int, int, int, int]) -> Branches:
    """17x17 -> 8x8 reduction (Figs. 12 and 18): 1x1 256 -> 3x3/2 (widths[0]); 1x1 256 -> 3x3/2
    (widths[1]); 1x1 256 -> 3x3 (widths[2]) -> 3x3/2 (widths[3]); 3x3/2 max-pool."""
    a, b, c, d = widths
    return Branches.numbered(
        [conv(in_ch, 256, 1), conv(256, a, 3, stride=2)],
        [conv(in_ch, 256, 1), conv(256, b, 3, stride=2)],
        [conv(in_ch, 256, 1), conv(256, c, 3, padding=1), conv(c, d, 3, stride=2)],
        max_pool_3x3_s2(),
    )


class InceptionResNet(StagedInception):
    """The layout both versions share: the stem (`stem_names`, starting with `tf_stem`'s layers), 35x35
    blocks (`repeat`), Reduction-A (`mixed_6a`), 17x17 blocks (`repeat_1`), optional aux head, Reduction-B
    (`mixed_7a`), 8x8 blocks (`repeat_2`), `tail_names`, average pooling, dropout, linear `classif`."""

    head_name = "classif"
    tail_names: tuple[str, ...] = ()

    aux_tap = "repeat_1"

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        names = (*self.stem_names, "repeat", "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", *self.tail_names)
        return [(name, getattr(self, name)) for name in names]


class InceptionResNetV2(InceptionResNet):
    """Inception-ResNet-v2, key for key timm's `InceptionResnetV2` (the TF-slim release).

    At 299x299: stem -> 35x35x320 (`mixed_5b`), 10 x block35 (scale 0.17) -> 35x35x320,
    Reduction-A -> 17x17x1088, 20 x block17 (scale 0.10) -> 17x17x1088, Reduction-B -> 8x8x2080,
    9 x block8 (scale 0.20) + 1 block8 (scale 1, no ReLU) -> 8x8x2080, 1x1 conv -> 8x8x1536, average
    pooling, dropout 0.2, linear `classif`. Minimum input 75x75. `scales=(a, b, c)` sets the
    residual scales of the three block types.

    The released model differs from the paper (Figs. 9, 16-18, Table 1), and this follows the release:
    - stem: Inception-v3-like (3x3 convs, pool, 1x1 80, 3x3 192, pool, then `mixed_5b`, an Inception-A
      with a 5x5 branch) giving 35x35x320, where the paper reuses the v4 stem (35x35x384);
    - 10 / 20 / 10 blocks where the paper has 5 / 10 / 5; block widths 320 / 1088 / 2080 where the
      paper has 384 / 1154 / 2048;
    - Reduction-A (k=256, l=256, m=384, n=384, Table 1) and Reduction-B (Fig. 18) on those narrower
      inputs, so the stages are 17x17x1088 and 8x8x2080;
    - a last block8 without ReLU and a final 1x1 conv to 1536 before pooling (not in the paper);
    - average pooling in `mixed_5b` ignores padding (TF's SAME pooling); BN eps 1e-3.
    Optional aux head (`aux_logits=True`, off by default; TF-slim's): after `repeat_1`, avgpool 5x5/3,
    1x1 conv 128, 5x5 conv 768, linear; needs 299x299 inputs.
    """

    aux_head_names = ("AuxLogits",)
    stem_names = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "maxpool_5a",
                  "mixed_5b")
    tail_names = ("block8", "conv2d_7b")
    feature_info = stage_info(("conv2d_2b", 64, 2), ("conv2d_4a", 192, 4), ("repeat", 320, 8),
                              ("repeat_1", 1088, 16), ("conv2d_7b", 1536, 32))

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, in_chans: int = 3,
                 drop_rate: float = 0.2, scales: tuple[float, float, float] = DEFAULT_SCALES) -> None:
        super().__init__(num_classes, in_chans, aux_logits)
        s35, s17, s8 = scales
        self.add_stem(tf_stem(in_chans))
        self.mixed_5b = Branches.numbered(
            conv(192, 96, 1),
            [conv(192, 48, 1), conv(48, 64, 5, padding=2)],
            [conv(192, 64, 1), conv(64, 96, 3, padding=1), conv(96, 96, 3, padding=1)],
            [avg_pool_3x3_same(), conv(192, 64, 1)],
        )
        self.repeat = nn.Sequential(*[block35(320, 32, (32, 32), (32, 48, 64), s35) for _ in range(10)])
        self.mixed_6a = reduction_a(320, k=256, l=256, m=384, n=384)
        self.repeat_1 = nn.Sequential(*[block_factorized(1088, 192, (128, 160, 192), 7, s17) for _ in range(20)])
        self.AuxLogits = InceptionAux(1088, num_classes) if aux_logits else None
        self.mixed_7a = reduction_b(1088, (384, 288, 288, 320))
        self.repeat_2 = nn.Sequential(*[block_factorized(2080, 192, (192, 224, 256), 3, s8) for _ in range(9)])
        self.block8 = block_factorized(2080, 192, (192, 224, 256), 3, 1.0, activate=False)
        self.conv2d_7b = conv(2080, 1536, 1)
        self.head_drop = nn.Dropout(drop_rate)
        self.classif = nn.Linear(1536, num_classes)
        init_weights(self)


class InceptionResNetV1(InceptionResNet):
    """Inception-ResNet-v1 as in the paper (Figs. 10-15): stem of Fig. 14 -> 35x35x256, 5 x
    Inception-ResNet-A -> 35x35x256, Reduction-A (k=192, l=192, m=256, n=384) -> 17x17x896,
    10 x Inception-ResNet-B -> 17x17x896, Reduction-B (Fig. 12) -> 8x8x1792, 5 x Inception-ResNet-C
    -> 8x8x1792, average pooling, dropout 0.2 (keep 0.8), linear. Input 299x299, minimum 75x75.

    The paper gives no residual scales for v1; `scales` defaults to v2's released (0.17, 0.10, 0.20).
    BN follows every convolution except the linear 1x1 of each residual branch (the paper keeps BN
    off the summations). No aux head and no released weights (no peer).
    """

    stem_names = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b")
    feature_info = stage_info(("conv2d_2b", 64, 2), ("conv2d_4a", 192, 4), ("repeat", 256, 8),
                              ("repeat_1", 896, 16), ("repeat_2", 1792, 32))

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, in_chans: int = 3,
                 drop_rate: float = 0.2, scales: tuple[float, float, float] = DEFAULT_SCALES) -> None:
        super().__init__(num_classes, in_chans, aux_logits=False)
        s35, s17, s8 = scales
        self.add_stem([*tf_stem(in_chans)[:6], conv(192, 256, 3, stride=2)])  # no last pool: a 3x3/2 conv
        self.repeat = nn.Sequential(*[block35(256, 32, (32, 32), (32, 32, 32), s35) for _ in range(5)])
        self.mixed_6a = reduction_a(256, k=192, l=192, m=256, n=384)
        self.repeat_1 = nn.Sequential(*[block_factorized(896, 128, (128, 128, 128), 7, s17) for _ in range(10)])
        self.AuxLogits = None
        self.mixed_7a = reduction_b(896, (384, 256, 256, 256))
        self.repeat_2 = nn.Sequential(*[block_factorized(1792, 192, (192, 192, 192), 3, s8) for _ in range(5)])
        self.head_drop = nn.Dropout(drop_rate)
        self.classif = nn.Linear(1792, num_classes)
        init_weights(self)


_PAPER = ("Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning "
          "(arXiv:1602.07261)")


register_model(
    "inception_resnet_v2", InceptionResNetV2, _PAPER,
    "Inception-ResNet-v2, timm weight-compatible; optional TF-slim aux head after the 17x17 stage",
    preprocess=dataclasses.replace(INCEPTION_PREPROCESS, crop_pct=0.8975), recipe="inception-v4-paper",
    aux_weight=0.4, peers={"timm": "inception_resnet_v2"},
)
register_model(
    "inception_resnet_v1", InceptionResNetV1, _PAPER,
    "Inception-ResNet-v1 as in the paper's figures (no released weights)",
    preprocess=INCEPTION_PREPROCESS, recipe="inception-v4-paper",
)
