"""Inception-v4 (Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning"), laid out key for key like timm's `inception_v4` (the TF-slim release),
with the optional TF-slim auxiliary head."""

from __future__ import annotations

from torch import nn

from .base import StagedInception, init_weights, stage_info
from .blocks import (
    Branches,
    InceptionAux,
    avg_pool_3x3_same,
    factorized_conv,
    max_pool_3x3_s2,
    reduction_a,
    split_1x3_3x1,
    tf_stem_convs,
)
from .blocks import basic_conv as conv
from .registry import INCEPTION_PREPROCESS, register_model


def stem() -> list[nn.Module]:
    """The rest of the stem after the three 3x3 convs (Fig. 3): 147x147x64 -> 35x35x384."""
    mixed_3a = Branches([[("maxpool", max_pool_3x3_s2())], [("conv", conv(64, 96, 3, stride=2))]])
    mixed_4a = Branches.numbered(
        [conv(160, 64, 1), conv(64, 96, 3)],
        [conv(160, 64, 1), *factorized_conv(64, 64, 7), conv(64, 96, 3)],
    )
    mixed_5a = Branches([[("conv", conv(192, 192, 3, stride=2))], [("maxpool", max_pool_3x3_s2())]])
    return [mixed_3a, mixed_4a, mixed_5a]


def inception_a(in_ch: int = 384) -> Branches:
    """35x35 Inception-A (Fig. 4): 384 -> 384 channels."""
    return Branches.numbered(
        conv(in_ch, 96, 1),
        [conv(in_ch, 64, 1), conv(64, 96, 3, padding=1)],
        [conv(in_ch, 64, 1), conv(64, 96, 3, padding=1), conv(96, 96, 3, padding=1)],
        [avg_pool_3x3_same(), conv(in_ch, 96, 1)],
    )


def inception_b(in_ch: int = 1024) -> Branches:
    """17x17 Inception-B (Fig. 5): 1024 -> 1024 channels."""
    return Branches.numbered(
        conv(in_ch, 384, 1),
        [conv(in_ch, 192, 1), *factorized_conv(192, 256, 7, mid_ch=224)],
        [conv(in_ch, 192, 1), *factorized_conv(192, 224, 7, mid_ch=192, order="nx1"),
         *factorized_conv(224, 256, 7, mid_ch=224, order="nx1")],
        [avg_pool_3x3_same(), conv(in_ch, 128, 1)],
    )


def reduction_b(in_ch: int = 1024) -> Branches:
    """17x17 -> 8x8 Reduction-B (Fig. 8): 1024 -> 1536 channels."""
    return Branches.numbered(
        [conv(in_ch, 192, 1), conv(192, 192, 3, stride=2)],
        [conv(in_ch, 256, 1), *factorized_conv(256, 320, 7, mid_ch=256), conv(320, 320, 3, stride=2)],
        max_pool_3x3_s2(),
    )


def inception_c(in_ch: int = 1536) -> Branches:
    """8x8 Inception-C (Fig. 6): 1536 -> 1536 channels."""
    return Branches([
        [("branch0", conv(in_ch, 256, 1))],
        [("branch1_0", conv(in_ch, 384, 1)), split_1x3_3x1("branch1_1", 384, 256)],
        [("branch2_0", conv(in_ch, 384, 1)), ("branch2_1", conv(384, 448, (3, 1), padding=(1, 0))),
         ("branch2_2", conv(448, 512, (1, 3), padding=(0, 1))), split_1x3_3x1("branch2_3", 512, 256)],
        [("branch3", nn.Sequential(avg_pool_3x3_same(), conv(in_ch, 256, 1)))],
    ])


class InceptionV4(StagedInception):
    """Inception-v4, key for key timm's `InceptionV4` (itself the TF-slim release).

    At 299x299: stem -> 35x35x384 (features.5), 4 x Inception-A -> 35x35x384 (features.9),
    Reduction-A (k=192, l=224, m=256, n=384) -> 17x17x1024 (features.10), 7 x Inception-B ->
    17x17x1024 (features.17), Reduction-B -> 8x8x1536 (features.18), 3 x Inception-C -> 8x8x1536
    (features.21), average pooling, dropout 0.2 (keep 0.8), linear `last_linear`. Minimum input 75x75.

    Where the released layout (followed here, so its weights load) differs from the paper's figures:
    - stem (Fig. 3), 7x7 branch: 1x7 then 7x1 (the figure draws 7x1 then 1x7);
    - Inception-B (Fig. 5), double-7x7 branch: 7x1, 1x7, 7x1, 1x7 (the figure starts with 1x7);
    - Inception-C (Fig. 6), deep branch: 3x1 (448) then 1x3 (512) (the figure has 1x3 then 3x1);
    - average pooling in the modules ignores the padding (TF's SAME pooling);
    - BN eps 1e-3 after every convolution.
    Optional aux head (`aux_logits=True`, off by default; TF-slim's, not in the paper): after the
    last Inception-B, avgpool 5x5/3, 1x1 conv 128, 5x5 conv 768, linear; needs 299x299 inputs.
    """

    head_name = "last_linear"
    aux_head_names = ("AuxLogits",)
    aux_tap = "features.17"  # the 7th Inception-B (17x17x1024)
    feature_info = stage_info(("features.2", 64, 2), ("features.3", 160, 4), ("features.9", 384, 8),
                              ("features.17", 1024, 16), ("features.21", 1536, 32))

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, in_chans: int = 3,
                 drop_rate: float = 0.2) -> None:
        super().__init__(num_classes, in_chans, aux_logits)
        self.features = nn.Sequential(
            *tf_stem_convs(in_chans),
            *stem(),
            *[inception_a() for _ in range(4)],
            reduction_a(384, k=192, l=224, m=256, n=384),
            *[inception_b() for _ in range(7)],
            reduction_b(),
            *[inception_c() for _ in range(3)],
        )
        self.AuxLogits = InceptionAux(1024, num_classes) if aux_logits else None
        self.head_drop = nn.Dropout(drop_rate)
        self.last_linear = nn.Linear(1536, num_classes)
        init_weights(self)

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        return [(f"features.{i}", layer) for i, layer in enumerate(self.features)]


register_model(
    "inception_v4", InceptionV4,
    "Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning "
    "(arXiv:1602.07261)",
    "Inception-v4, timm weight-compatible; optional TF-slim aux head after the 17x17 stage",
    preprocess=INCEPTION_PREPROCESS, recipe="inception-v4-paper", aux_weight=0.4, peers={"timm": "inception_v4"},
)
