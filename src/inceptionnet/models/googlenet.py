"""Inception-v1 (GoogLeNet): the paper's network, a batch-norm form, a torchvision-compatible form
and a CIFAR form, all built by one `GoogLeNet` class from a `GoogLeNetConfig`.

Reference: C. Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842), Table 1.
Module names follow torchvision's `GoogLeNet` (conv1, maxpool1, ..., inception3a, ..., aux1, aux2, fc),
so the torchvision-compatible variant loads torchvision state_dicts key for key.

Variants and their deliberate differences:
- `googlenet` (paper-exact): Table 1 layer for layer: no BN, convolutions with bias, true 5x5 branches,
  LRN (size 5, alpha 1e-4, beta 0.75, Caffe's values) after the first max-pool and after conv3.
  The paper gives no padding rule; we use Caffe's released model: conv1 padding 3 and 3x3/2 max-pools
  without padding in ceil mode, which give Table 1's 112, 56, 28, 14, 7 at 224. The 7x7 average pool
  is adaptive (identical at 224, global at other sizes). Aux heads: the paper's 5x5/3 average pool where
  it yields 4x4 (4a/4d maps of 14-16 pixels), adaptive 4x4 pooling elsewhere. 6,998,552 parameters
  without aux at 1000 classes, 1.583 G multiply-adds at 224. Weight init is the released Caffe model's
  (the paper states none): Caffe's "xavier" filler (uniform, variance 1/fan_in) everywhere, convolution
  biases 0.2, linear biases 0. Without BN, Kaiming-normal init gives logits of std ~65 at init and
  the paper recipe diverges within a few batches; this init gives ~1.
- `googlenet_bn`: the PyTorch ImageFolder tutorial's InceptionV1 in conv-BN-ReLU form (its stem has no BN;
  BN makes its conv biases redundant, so they are dropped), BN eps 1e-5 as the tutorial. Not copied from
  the tutorial: its `nn.Softmax` at the end (the model returns logits; a softmax before CrossEntropyLoss
  squashes gradients) and its extra FC 1024 + ReLU before the classifier (not in Table 1; 1.05 M
  parameters). Its max-pools use padding 1 in floor mode; ours are ceil mode (same sizes at 224).
  Aux heads are the paper's with BN after the 1x1 conv.
- `googlenet_tv`: torchvision's port: BN eps 1e-3, a 3x3 kernel in the "5x5" branch, ceil-mode pools
  (also in the branch pool), a 2x2/2 pool before 5a, aux heads with adaptive 4x4 pooling, dropout 0.2,
  and `transform_input`: when True the model takes ImageNet-normalised input and re-normalises it to
  mean 0.5/std 0.5 per channel (x * std/0.5 + (mean-0.5)/0.5), as torchvision does for its weights,
  which were converted from a model trained on such input.
- `googlenet_cifar`: the common CIFAR port's stem (one 3x3 conv of 192, no downsampling before 3a), then
  Table 1's modules in BN form with true 5x5 (the popular port uses two 3x3 instead), 3x3/2 pools to
  16x16 and 8x8, global pool, dropout 0.4, linear; no aux heads.

The minimum input size is the network's total stride (32, or 4 for CIFAR), where the last stage is 1x1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import InceptionClassifier, init_weights
from .blocks import ConvNormAct, inception_module, lrn
from .registry import CIFAR_PREPROCESS, IMAGENET_MEAN, IMAGENET_STD, register_model

# Table 1 of the paper: in_ch, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
TABLE1_MODULES: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}
# The layers after the stem, in order; max-pools sit between the stages.
BODY_LAYERS = ("inception3a", "inception3b", "maxpool3", "inception4a", "inception4b", "inception4c",
               "inception4d", "inception4e", "maxpool4", "inception5a", "inception5b")
# Aux head name -> the module whose output it reads (paper: 4a and 4d).
AUX_TAPS = {"aux1": "inception4a", "aux2": "inception4d"}
FEATURE_CHANNELS = 1024
# The smallest input is the network's total stride, where the last stage is 1x1 (every layer accepts it; the
# ImageNet forms fail below 31 (paper) / 15 (torchvision) pixels anyway). Aux heads pool what they get to 4x4.
IMAGENET_MIN_INPUT = 32
CIFAR_MIN_INPUT = 4

PAPER = "Szegedy et al. 2014, Going Deeper with Convolutions (arXiv:1409.4842)"


@dataclass(frozen=True)
class GoogLeNetConfig:
    """What differs between the GoogLeNet variants.

    `bn_eps=None` means no batch norm and convolutions with bias (the paper); `kernel_5x5` is the
    kernel of the "5x5" branch (3 in torchvision's port); `lrn` inserts the paper's two LRN layers;
    `stem` is "imagenet" (7x7/2 conv, pools: /8 before 3a) or "cifar" (one 3x3 conv of 192, no
    early downsampling); `last_pool_kernel` is the pool before 5a (2 in torchvision);
    `aux_paper_pool` uses the paper's 5x5/3 average pool in the aux heads where it gives 4x4;
    `aux_heads` are the aux heads (of `AUX_TAPS`) the variant offers.
    """

    bn_eps: float | None
    kernel_5x5: int = 5
    lrn: bool = False
    stem: str = "imagenet"
    last_pool_kernel: int = 3
    branch_pool_ceil_mode: bool = False
    dropout: float = 0.4
    aux_paper_pool: bool = True
    aux_heads: tuple[str, ...] = tuple(AUX_TAPS)

    @property
    def min_input_size(self) -> int:
        """The total stride of the stem and body, where the last stage is 1x1."""
        return CIFAR_MIN_INPUT if self.stem == "cifar" else IMAGENET_MIN_INPUT


class AuxHead(nn.Module):
    """The paper's auxiliary classifier: avg-pool to 4x4 -> 1x1 conv 128 + ReLU -> FC 1024 + ReLU ->
    dropout 0.7 -> linear. (N, in_ch, H, W) -> (N, num_classes).

    With `paper_pool` the pool is the paper's 5x5/3 average pool wherever that yields 4x4 (maps of
    14-16 pixels, i.e. inputs near 224); everywhere else, and always without `paper_pool`
    (torchvision), adaptive average pooling to 4x4 keeps FC 1024's 2048 inputs at any input size.
    """

    def __init__(self, in_ch: int, num_classes: int, bn_eps: float | None, paper_pool: bool) -> None:
        super().__init__()
        self.paper_pool = paper_pool
        self.conv = ConvNormAct(in_ch, 128, 1, bn_eps=bn_eps)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.paper_pool and all((s - 5) // 3 + 1 == 4 for s in x.shape[-2:]):
            x = F.avg_pool2d(x, 5, stride=3)
        else:
            x = F.adaptive_avg_pool2d(x, 4)
        x = torch.flatten(self.conv(x), 1)
        x = F.relu(self.fc1(x), inplace=True)
        return self.fc2(self.dropout(x))


def _stem(cfg: GoogLeNetConfig, in_chans: int) -> dict[str, nn.Module]:
    """The layers before inception3a, by torchvision's names; (N, in_chans, H, W) -> (N, 192, H/8, W/8)
    for the ImageNet stem (3x3/2 ceil-mode max-pools, as Caffe's model), (N, 192, H, W) for CIFAR."""
    if cfg.stem == "cifar":
        return {"conv1": ConvNormAct(in_chans, 192, 3, padding=1, bn_eps=cfg.bn_eps)}
    layers: dict[str, nn.Module] = {
        "conv1": ConvNormAct(in_chans, 64, 7, stride=2, padding=3, bn_eps=cfg.bn_eps),
        "maxpool1": nn.MaxPool2d(3, stride=2, ceil_mode=True),
    }
    if cfg.lrn:
        layers["lrn1"] = lrn()
    layers["conv2"] = ConvNormAct(64, 64, 1, bn_eps=cfg.bn_eps)
    layers["conv3"] = ConvNormAct(64, 192, 3, padding=1, bn_eps=cfg.bn_eps)
    if cfg.lrn:
        layers["lrn2"] = lrn()
    layers["maxpool2"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    return layers


class GoogLeNet(InceptionClassifier):
    """GoogLeNet with Table 1's Inception modules; the variant is chosen by `cfg`.

    Feature layers run in `feature_names` order; aux heads (`aux1` on 4a, `aux2` on 4d, those of
    `cfg.aux_heads`) exist only when built with `aux_logits=True`. The head is global average pooling
    (the paper's 7x7 average pool at 224, adaptive so other sizes work), dropout, linear. With `transform_input`, an
    ImageNet-normalised input is re-normalised to mean 0.5/std 0.5 first, exactly as torchvision does.
    (N, in_chans, H, W) -> (N, num_classes).
    """

    def __init__(self, cfg: GoogLeNetConfig, num_classes: int = 1000, aux_logits: bool = True,
                 in_chans: int = 3, transform_input: bool = False,
                 input_pad_fill: tuple[float, ...] | None = None) -> None:
        super().__init__(num_classes, in_chans, aux_logits, min_input_size=cfg.min_input_size)
        self.aux_head_names = cfg.aux_heads
        if transform_input and in_chans != 3:
            raise ConfigError(f"transform_input needs 3 input channels, got in_chans={in_chans}")
        self.cfg = cfg
        self.transform_input = transform_input
        if transform_input:
            # torchvision: x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5; not persistent, so no extra state_dict keys.
            # The constants are computed in double precision like torchvision's, so results match bit for bit.
            scale = [s / 0.5 for s in IMAGENET_STD]
            shift = [(m - 0.5) / 0.5 for m in IMAGENET_MEAN]
            self.register_buffer("input_scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("input_shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        stem = _stem(cfg, in_chans)
        for name, layer in stem.items():
            self.add_module(name, layer)
        self.register_buffer("input_pad_fill", None, persistent=False)
        if input_pad_fill is not None:
            # Weights with an input transform folded into conv1 (weights.fold_input_affine) saw zero padding
            # after the transform: conv1 then pads with the per-channel value that the transform maps to 0.
            if len(input_pad_fill) != in_chans:
                raise ConfigError(f"input_pad_fill needs {in_chans} values, got {len(input_pad_fill)}")
            self.stem_padding = self.conv1.conv.padding
            self.conv1.conv.padding = (0, 0)
            self.register_buffer("input_pad_fill", torch.tensor(input_pad_fill).view(1, -1, 1, 1), persistent=False)
        for name in BODY_LAYERS:
            if name.startswith("maxpool"):
                kernel = cfg.last_pool_kernel if name == "maxpool4" else 3
                self.add_module(name, nn.MaxPool2d(kernel, stride=2, ceil_mode=True))
            else:
                self.add_module(name, inception_module(*TABLE1_MODULES[name], bn_eps=cfg.bn_eps,
                                                       kernel_5x5=cfg.kernel_5x5,
                                                       pool_ceil_mode=cfg.branch_pool_ceil_mode))
        self.feature_names = (*stem, *BODY_LAYERS)
        self.feature_info = _feature_info(cfg)
        for aux_name in cfg.aux_heads:
            in_ch = _out_channels(AUX_TAPS[aux_name])
            head = AuxHead(in_ch, num_classes, cfg.bn_eps, cfg.aux_paper_pool) if aux_logits else None
            setattr(self, aux_name, head)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(FEATURE_CHANNELS, num_classes)
        self.classifier_names = ("fc", *(f"{name}.fc2" for name in cfg.aux_heads if aux_logits))
        if cfg.bn_eps is None:
            caffe_init(self)
        else:
            init_weights(self)

    @classmethod
    def min_input_for(cls, cfg: GoogLeNetConfig, **arch_kwargs) -> int:
        """The variant's minimum input side (`cfg.min_input_size`)."""
        return cfg.min_input_size

    @classmethod
    def aux_heads_for(cls, cfg: GoogLeNetConfig, **arch_kwargs) -> tuple[str, ...]:
        """The variant's aux heads (`cfg.aux_heads`)."""
        return cfg.aux_heads

    def prepare_input(self, x: Tensor) -> Tensor:
        if self.transform_input:
            x = x * self.input_scale + self.input_shift
        if self.input_pad_fill is not None:
            pad_h, pad_w = self.stem_padding
            x = F.pad(x - self.input_pad_fill, (pad_w, pad_w, pad_h, pad_h)) + self.input_pad_fill
        return x

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in self.feature_names]

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        taps = {AUX_TAPS[name]: getattr(self, name) for name in self.aux_head_names} if with_aux else {}
        x, aux = self.forward_trunk(x, taps)
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return self.fc(x), aux


def caffe_init(model: nn.Module) -> None:
    """The released Caffe GoogLeNet's initialisation: "xavier" weights (uniform in +-sqrt(3 / fan_in)),
    convolution biases 0.2 (every ReLU starts active), linear biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            bound = (3.0 / fan_in) ** 0.5
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)


def _feature_info(cfg: GoogLeNetConfig) -> list[dict]:
    """The five stages: stem conv, stem end (before its last pool), 3b, 4e, 5b (ImageNet strides
    2, 4, 8, 16, 32; CIFAR: the stem and 3b at stride 1, 4e at 2, 5b at 4)."""
    if cfg.stem == "cifar":
        stages = [("conv1", 192, 1), ("inception3b", 480, 1)]
    else:
        stages = [("conv1", 64, 2), ("lrn2" if cfg.lrn else "conv3", 192, 4), ("inception3b", 480, 8)]
    first_body = stages[-1][2]
    stages += [("inception4e", 832, first_body * 2), ("inception5b", FEATURE_CHANNELS, first_body * 4)]
    return [{"num_chs": c, "reduction": r, "module": m} for m, c, r in stages]


def _out_channels(module_name: str) -> int:
    """Output channels of a Table 1 module: #1x1 + #3x3 + #5x5 + pool proj."""
    _, c1, _, c3, _, c5, pool = TABLE1_MODULES[module_name]
    return c1 + c3 + c5 + pool


PAPER_CONFIG = GoogLeNetConfig(bn_eps=None, lrn=True)
BN_CONFIG = GoogLeNetConfig(bn_eps=1e-5)
TORCHVISION_CONFIG = GoogLeNetConfig(bn_eps=1e-3, kernel_5x5=3, last_pool_kernel=2, branch_pool_ceil_mode=True,
                                     dropout=0.2, aux_paper_pool=False)
CIFAR_CONFIG = GoogLeNetConfig(bn_eps=1e-5, stem="cifar", aux_heads=())


# Every variant: the paper's aux loss weight 0.3, aux heads on by default where the variant has them.
PAPER_AUX = {"aux_weight": 0.3, "aux_default": True}

register_model(
    "googlenet", GoogLeNet, PAPER,
    "Paper-exact GoogLeNet (Table 1): no BN, biased convs, LRN after the first pool and after conv3, true 5x5 "
    "branches, 3x3/2 ceil-mode max-pools (Caffe's), aux heads on 4a/4d with the paper's 5x5/3 pool at 224 "
    "(adaptive 4x4 elsewhere). 6,998,552 params without aux at 1000 classes.",
    cfg=PAPER_CONFIG, recipe="googlenet-paper", **PAPER_AUX,
)
register_model(
    "googlenet_bn", GoogLeNet, PAPER,
    "GoogLeNet with conv-BN-ReLU everywhere (the PyTorch ImageFolder tutorial's InceptionV1, BN eps 1e-5): no LRN, "
    "no conv bias, true 5x5, "
    "Table 1 widths, paper aux heads in BN form. Unlike the tutorial: BN in the stem too, logits instead of an "
    "in-model softmax, and a single linear head instead of the tutorial's extra FC 1024 + ReLU.",
    cfg=BN_CONFIG, recipe="tutorial-adam", **PAPER_AUX,
)
register_model(
    "googlenet_tv", GoogLeNet, PAPER,
    "torchvision-compatible GoogLeNet (loads torchvision.models.googlenet state_dicts): BN eps 1e-3, 3x3 in the "
    "'5x5' branch, ceil-mode pools, 2x2 pool before 5a, aux heads with adaptive 4x4 pooling, dropout 0.2, "
    "optional transform_input. 6,624,904 params without aux.",
    cfg=TORCHVISION_CONFIG, peers={"torchvision": "googlenet"}, **PAPER_AUX,
)
register_model(
    "googlenet_cifar", GoogLeNet, PAPER,
    "GoogLeNet for 32x32 inputs: one 3x3 conv of 192 (BN) as the stem, no early downsampling, then Table 1's "
    "modules (BN, true 5x5), 3x3/2 pools to 16x16 and 8x8, global pool, dropout 0.4, linear. No aux heads.",
    cfg=CIFAR_CONFIG, preprocess=CIFAR_PREPROCESS, recipe="cifar",
)
