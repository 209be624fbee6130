"""Inception-v3 (Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer Vision"),
laid out key for key like torchvision's and timm's `inception_v3`."""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from .base import StagedInception, init_weights, stage_info
from .blocks import Branches, InceptionAux, avg_pool_3x3, max_pool_3x3_s2, split_1x3_3x1, tf_stem
from .blocks import basic_conv as conv
from .registry import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_PREPROCESS, register_model


def inception_a(in_ch: int, pool_features: int) -> Branches:
    """35x35 module (paper Fig. 5: 5x5 as in the released model, and a double 3x3)."""
    return Branches([
        [("branch1x1", conv(in_ch, 64, 1))],
        [("branch5x5_1", conv(in_ch, 48, 1)), ("branch5x5_2", conv(48, 64, 5, padding=2))],
        [("branch3x3dbl_1", conv(in_ch, 64, 1)), ("branch3x3dbl_2", conv(64, 96, 3, padding=1)),
         ("branch3x3dbl_3", conv(96, 96, 3, padding=1))],
        [("pool", avg_pool_3x3()), ("branch_pool", conv(in_ch, pool_features, 1))],
    ])


def inception_b(in_ch: int) -> Branches:
    """35x35 -> 17x17 grid reduction (paper Fig. 10)."""
    return Branches([
        [("branch3x3", conv(in_ch, 384, 3, stride=2))],
        [("branch3x3dbl_1", conv(in_ch, 64, 1)), ("branch3x3dbl_2", conv(64, 96, 3, padding=1)),
         ("branch3x3dbl_3", conv(96, 96, 3, stride=2))],
        [("pool", max_pool_3x3_s2())],
    ])


def inception_c(in_ch: int, c7: int) -> Branches:
    """17x17 module with 7x7 factorised into 1x7 and 7x1 (paper Fig. 6, n=7)."""
    row, col = {"kernel_size": (1, 7), "padding": (0, 3)}, {"kernel_size": (7, 1), "padding": (3, 0)}
    return Branches([
        [("branch1x1", conv(in_ch, 192, 1))],
        [("branch7x7_1", conv(in_ch, c7, 1)), ("branch7x7_2", conv(c7, c7, **row)),
         ("branch7x7_3", conv(c7, 192, **col))],
        [("branch7x7dbl_1", conv(in_ch, c7, 1)), ("branch7x7dbl_2", conv(c7, c7, **col)),
         ("branch7x7dbl_3", conv(c7, c7, **row)), ("branch7x7dbl_4", conv(c7, c7, **col)),
         ("branch7x7dbl_5", conv(c7, 192, **row))],
        [("pool", avg_pool_3x3()), ("branch_pool", conv(in_ch, 192, 1))],
    ])


def inception_d(in_ch: int) -> Branches:
    """17x17 -> 8x8 grid reduction."""
    return Branches([
        [("branch3x3_1", conv(in_ch, 192, 1)), ("branch3x3_2", conv(192, 320, 3, stride=2))],
        [("branch7x7x3_1", conv(in_ch, 192, 1)), ("branch7x7x3_2", conv(192, 192, (1, 7), padding=(0, 3))),
         ("branch7x7x3_3", conv(192, 192, (7, 1), padding=(3, 0))), ("branch7x7x3_4", conv(192, 192, 3, stride=2))],
        [("pool", max_pool_3x3_s2())],
    ])


def inception_e(in_ch: int) -> Branches:
    """8x8 module with expanded filter banks (paper Fig. 7)."""
    return Branches([
        [("branch1x1", conv(in_ch, 320, 1))],
        [("branch3x3_1", conv(in_ch, 384, 1)), split_1x3_3x1("branch3x3_2", 384, 384)],
        [("branch3x3dbl_1", conv(in_ch, 448, 1)), ("branch3x3dbl_2", conv(448, 384, 3, padding=1)),
         split_1x3_3x1("branch3x3dbl_3", 384, 384)],
        [("pool", avg_pool_3x3()), ("branch_pool", conv(in_ch, 192, 1))],
    ])


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

    aux_head_names = ("AuxLogits",)
    aux_tap = "Mixed_6e"
    feature_info = stage_info(("Conv2d_2b_3x3", 64, 2), ("Conv2d_4a_3x3", 192, 4), ("Mixed_5d", 288, 8),
                              ("Mixed_6e", 768, 16), ("Mixed_7c", 2048, 32))
    stem_names = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                  "maxpool2")
    stage_names = (*stem_names, "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                   "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, in_chans: int = 3,
                 drop_rate: float = 0.2, transform_input: bool = False) -> None:
        super().__init__(num_classes, in_chans, aux_logits)
        if transform_input and in_chans != 3:
            raise ConfigError(f"transform_input re-normalises RGB images; it needs in_chans=3, got {in_chans}")
        self.transform_input = transform_input
        self.add_stem(tf_stem(in_chans))
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
        scale = x.new_tensor([s / 0.5 for s in IMAGENET_STD]).view(1, 3, 1, 1)
        shift = x.new_tensor([(m - 0.5) / 0.5 for m in IMAGENET_MEAN]).view(1, 3, 1, 1)
        return x * scale + shift


# The released (TF-trained) weights expect [-1, 1] inputs: timm's preprocessing. torchvision's copy of the same
# weights takes ImageNet mean/std (resize 342, crop 299) and converts with transform_input=True.
register_model(
    "inception_v3", InceptionV3,
    "Szegedy et al. 2015, Rethinking the Inception Architecture for Computer Vision (arXiv:1512.00567)",
    "Inception-v3, torchvision/timm weight-compatible; aux head after Mixed_6e",
    preprocess=INCEPTION_PREPROCESS, recipe="inception-v3-paper", aux_weight=0.4,
    peers={"torchvision": "inception_v3", "timm": "inception_v3"},
)
