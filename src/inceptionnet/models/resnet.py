"""ResNet baselines: ResNet-18/34 for CIFAR (the TF2 course) and for ImageNet (torchvision's layout).

Reference: K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385).
Both forms are torchvision's ResNet layers (BasicBlock, 1x1 conv + BN downsample path) held under
torchvision's names (conv1, bn1, layer1..4, fc), so torchvision state_dicts load key for key; the
class adds the model contract (plain-tensor forward, reset_classifier, in_chans, input-size check).

The CIFAR form follows the TF2 course's ResNet18/ResNet34: a 3x3/1 stem conv of 64, no max-pool, stages of
[2, 2, 2, 2] / [3, 4, 6, 3] BasicBlocks with 64-512 channels, global average pool, linear. Deliberate
differences from the seed: the first stage keeps stride 1 (the seed's test `block_list != 0` is always
true, so it strides every stage and ends at 2x2; the usual CIFAR ResNet ends at 4x4), its 2x2
AveragePooling2D before Dense is replaced by global average pooling (the seed's Dense then acts per pixel),
and the model returns logits without the seed's softmax and L2 regulariser (weight decay belongs to the
recipe).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock
from torchvision.models.resnet import ResNet as TorchvisionResNet

from .base import InceptionClassifier, init_weights, stage_info
from .registry import CIFAR_PREPROCESS, register_model

PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition (arXiv:1512.03385)"
TF2_COURSE = "The TF2 course (TensorFlow 2.1 notes, ResNet18/ResNet34)"
STAGES = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


class ResNet(InceptionClassifier):
    """ResNet with BasicBlocks. `cifar_stem`: 3x3/1 conv and no max-pool (total stride 8) instead of
    the 7x7/2 conv and 3x3/2 max-pool (total stride 32). (N, in_chans, H, W) -> (N, num_classes)."""

    classifier_names = ("fc",)

    def __init__(self, layers: Sequence[int], num_classes: int = 1000, aux_logits: bool = False, in_chans: int = 3,
                 cifar_stem: bool = False) -> None:
        super().__init__(num_classes, in_chans, aux_logits=False, min_input_size=self.min_input_for(cifar_stem))
        net = TorchvisionResNet(BasicBlock, list(layers), num_classes=num_classes)
        if cifar_stem:
            net.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_chans != 3:
            net.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        for name, child in net.named_children():
            self.add_module(name, child)
        stem_stride = 1 if cifar_stem else 2
        self.feature_info = stage_info(("relu", 64, stem_stride), *(
            (f"layer{i + 1}", 64 * 2 ** i, stem_stride * 2 ** (i + (0 if cifar_stem else 1))) for i in range(4)))
        init_weights(self)

    @classmethod
    def min_input_for(cls, cifar_stem: bool = False, **arch_kwargs) -> int:
        """The total stride (8 with the CIFAR stem, else 32), where layer4 is 1x1."""
        return 8 if cifar_stem else 32

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        return [(name, getattr(self, name)) for name in names]

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        x = self.forward_trunk(x)[0]
        return self.fc(torch.flatten(self.avgpool(x), 1)), []


for _name, _layers in STAGES.items():
    register_model(
        f"{_name}_cifar", ResNet, f"{TF2_COURSE}; {PAPER}",
        f"{_name.capitalize()} for 32x32 inputs as in the TF2 course: 3x3/1 stem conv of 64, no max-pool, "
        f"BasicBlocks {list(_layers)}, global pool, linear (torchvision key names).",
        preprocess=CIFAR_PREPROCESS, recipe="cifar", layers=_layers, cifar_stem=True,
    )
    register_model(
        _name, ResNet, PAPER,
        f"torchvision's {_name} (BasicBlocks {list(_layers)}) under the model contract; loads "
        "torchvision state_dicts key for key.",
        peers={"torchvision": _name}, layers=_layers,
    )
