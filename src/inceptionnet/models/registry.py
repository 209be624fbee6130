"""The model registry: one `ModelSpec` per name, `create_model`, `list_models`, `get_spec`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn

from ..errors import ConfigError
from .features import FeatureExtractor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


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
    default_input_size: int
    min_input_size: int
    preprocess: Preprocess
    aux_heads: tuple[str, ...] = ()
    aux_weight: float = 0.0
    aux_default: bool = False
    default_recipe: str = "finetune"
    peers: dict[str, str] = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add `spec` to the registry; a name can be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    # Importing the package registers every model; done lazily so `registry` has no import cycle.
    from . import _all  # noqa: F401


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of `name`; a `ConfigError` naming the known models if there is none."""
    _ensure_loaded()
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
    if aux_logits is None:
        aux_logits = spec.aux_default
    if aux_logits and not spec.aux_heads:
        raise ConfigError(f"model {name!r} has no auxiliary heads")
    model = spec.builder(num_classes=num_classes, aux_logits=aux_logits, in_chans=in_chans, **kwargs)
    model.spec = spec
    if features_only:
        return FeatureExtractor(model, out_indices)
    return model
