"""The model registry: one `ModelSpec` per name, `register_model` (the spec helper each family registers
its names with), `create_model`, `list_models`, `get_spec`, and the preprocessing constants.

This module imports no model family: each family imports it and registers its names when imported, and
`models/__init__.py` imports every family, so importing anything under `inceptionnet.models` registers all.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn

from ..errors import ConfigError
from .base import InceptionClassifier
from .features import FeatureExtractor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the tensor a model expects.

    `mean`/`std` are given on the `input_range` scale (1.0: pixels in [0, 1]; 255.0: in [0, 255]).
    `crop_pct` is the centre-crop fraction: resize the shorter side to `input_size / crop_pct`,
    then crop `input_size`. `label_offset` is added to our class index to get the checkpoint's
    (1 for checkpoints with a background class at index 0).
    """

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_range: float = 1.0
    channel_order: str = "RGB"
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    label_offset: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        d = dict(d)
        for key in ("mean", "std"):
            d[key] = tuple(d[key])
        return cls(**d)


IMAGENET_PREPROCESS = Preprocess()
# The TF-trained Inception-v3/v4/ResNet releases: [-1, 1] inputs, bicubic resize, 299x299.
INCEPTION_PREPROCESS = Preprocess(input_size=299, mean=INCEPTION_MEAN, std=INCEPTION_STD, interpolation="bicubic")
CIFAR_PREPROCESS = Preprocess(input_size=32, mean=CIFAR_MEAN, std=CIFAR_STD, crop_pct=1.0)


@dataclass(frozen=True)
class ModelSpec:
    """What is known about a registered model before it is built.

    `aux_heads` names the modules whose logits `model(x, with_aux=True)` returns, in order;
    `aux_weight` is the paper's loss weight for each. `peers` maps a weight source
    ("torchvision", "timm", "cadene") to the peer's model name whose state_dict loads here.
    """

    name: str
    builder: Callable[..., nn.Module]
    paper: str
    min_input_size: int
    preprocess: Preprocess
    aux_heads: tuple[str, ...] = ()
    aux_weight: float = 0.0
    aux_default: bool = False
    default_recipe: str = "finetune"
    peers: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def default_input_size(self) -> int:
        """The input side the model is trained and evaluated at: its preprocessing's."""
        return self.preprocess.input_size

    def uses_aux(self, requested: bool | None) -> bool:
        """Whether the model is built with aux heads when `requested` (None: the spec's default); never for a
        model that has none (a recipe's aux heads do not apply to it)."""
        return bool(self.aux_heads) and (self.aux_default if requested is None else requested)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add `spec` to the registry; a name can be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def register_model(name: str, arch: type[InceptionClassifier], paper: str, description: str, *,
                   preprocess: Preprocess = IMAGENET_PREPROCESS, recipe: str = "finetune", aux_weight: float = 0.0,
                   aux_default: bool = False, peers: dict[str, str] | None = None, **arch_kwargs) -> ModelSpec:
    """Register `name`, built as `arch(**arch_kwargs, num_classes=..., aux_logits=..., in_chans=...)`, giving
    only what differs between models. The minimum input size and the aux heads are the architecture's
    (`arch.min_input_for`, `arch.aux_heads_for`); `aux_weight` and `aux_default` apply only where there
    are aux heads; the default input size is the preprocessing's.
    """
    aux_heads = arch.aux_heads_for(**arch_kwargs)
    return register(ModelSpec(
        name=name, builder=functools.partial(arch, **arch_kwargs), paper=paper,
        min_input_size=arch.min_input_for(**arch_kwargs), preprocess=preprocess, aux_heads=aux_heads,
        aux_weight=aux_weight if aux_heads else 0.0, aux_default=aux_default and bool(aux_heads),
        default_recipe=recipe, peers=peers or {}, description=description,
    ))


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of `name`; a `ConfigError` naming the known models if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None


def create_model(
    name: str,
    num_classes: int = 1000,
    aux_logits: bool | None = None,
    in_chans: int = 3,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **kwargs,
) -> nn.Module:
    """Build model `name` with random weights.

    `aux_logits=None` takes the spec's default. The returned module maps (N, in_chans, H, W)
    float images to (N, num_classes) logits; `model(x, with_aux=True)` also returns aux logits.
    With `features_only` it is the trunk alone, returning the feature maps of the stages
    `out_indices` (positions in the model's `feature_info`; None: every stage) as a list.
    """
    spec = get_spec(name)
    if num_classes < 1:
        raise ConfigError(f"--num-classes must be at least 1, got {num_classes}")
    if aux_logits and not spec.aux_heads:
        raise ConfigError(f"model {name!r} has no auxiliary heads")
    model = spec.builder(num_classes=num_classes, aux_logits=spec.uses_aux(aux_logits), in_chans=in_chans, **kwargs)
    model.spec = spec
    if features_only:
        return FeatureExtractor(model, out_indices)
    return model
