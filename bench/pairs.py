"""Which of our models is compared with which peer, at which image size (shared by infer.py and train.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

import inceptionnet


@dataclass(frozen=True)
class Pair:
    """Our registered model(s) and the peer implementations of the same network, at `size` pixels.

    `ours[0]` is the one the ratio is taken against (the same architecture as the peers); any
    further names are shown alongside (the paper's GoogLeNet next to the torchvision-compatible one).
    """

    size: int
    ours: tuple[str, ...]
    peers: dict[str, Callable[[], nn.Module]]


def _torchvision(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, aux_logits=False, init_weights=False, **kwargs)
    return build


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False)
    return build


PAIRS: dict[str, Pair] = {
    "googlenet": Pair(224, ("googlenet_tv", "googlenet"), {"torchvision googlenet": _torchvision("googlenet")}),
    "inception_v3": Pair(299, ("inception_v3",), {"torchvision inception_v3": _torchvision("inception_v3"),
                                                  "timm inception_v3": _timm("inception_v3")}),
    "inception_v4": Pair(299, ("inception_v4",), {"timm inception_v4": _timm("inception_v4")}),
    "inception_resnet_v2": Pair(299, ("inception_resnet_v2",),
                                {"timm inception_resnet_v2": _timm("inception_resnet_v2")}),
}


def ours(name: str) -> nn.Module:
    """Our model without aux heads (the peers are built without them too)."""
    return inceptionnet.create_model(name, aux_logits=False)
