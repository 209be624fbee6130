"""`create_model(name, pretrained=True)` / `create_model(name, weights=TAG)`: a registered model with its
published weights, converted to our layout, torchvision's input transform folded into conv1."""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError, WeightsError
from ..models import create_model as create_random_model
from ..models.features import FeatureExtractor
from .convert import LoadReport, convert_state_dict, fold_input_affine, load_state_dict, read_state_dict
from .download import fetch_weights
from .registry import (
    TV_INPUT_SCALE,
    TV_INPUT_SHIFT,
    WeightSpec,
    class_names,
    default_weights,
    get_weights,
    list_weights,
)


def resolve_weights(name: str, pretrained: bool = False, weights: str | None = None) -> WeightSpec | None:
    """The record `create_model(name, pretrained, weights)` loads: `weights` (a tag), else with
    `pretrained` the model's default (a `name` of the form `model.tag` picks that tag), else None."""
    if weights is None and "." in name:
        weights, pretrained = name, True
    if weights is not None:
        spec = get_weights(weights)
        if spec.model != name.split(".", 1)[0]:
            raise ConfigError(f"weights {spec.tag} are for {spec.model}, not {name}")
        return spec
    if not pretrained:
        return None
    spec = default_weights(name)
    if spec is None:
        with_weights = sorted({w.model for w in list_weights()})
        raise ConfigError(f"model {name!r} has no published weights; models with weights: {', '.join(with_weights)}")
    return spec


def load_pretrained(model: nn.Module, spec: WeightSpec | str, weights_dir: str | os.PathLike | None = None,
                    progress: bool = True, aux: str = "keep") -> LoadReport:
    """Fetch (or find in the cache) `spec`'s file, convert it from its layout, fold torchvision's
    transform_input into the first conv, and load it into `model` (built by `create_model(spec.model,
    **spec.model_kwargs)`), strictly: only aux heads the file lacks may stay random."""
    spec = get_weights(spec) if isinstance(spec, str) else spec
    state = pretrained_state_dict(model, spec, weights_dir, progress)
    report = load_state_dict(model, state, "inceptionnet", strict=True, aux=aux, origin=spec.tag)
    model.weights_spec = spec
    return report


def pretrained_state_dict(model: nn.Module, spec: WeightSpec, weights_dir: str | os.PathLike | None = None,
                          progress: bool = True) -> dict:
    """`spec`'s weights as a state_dict in `model`'s layout (converted, transform_input folded)."""
    if getattr(model, "transform_input", False) and spec.fold_input:
        raise ConfigError(f"{spec.tag}: its input transform is folded into the first conv; build the model "
                          "without transform_input")
    path = fetch_weights(spec, weights_dir, progress)
    state = convert_state_dict(model, read_state_dict(path), spec.source)
    if spec.fold_input:
        state = fold_input_affine(state, *spec.fold_input, scale=TV_INPUT_SCALE, shift=TV_INPUT_SHIFT)
    return state


def is_weights_tag(text: str) -> bool:
    """True when `text` is a registered weights tag (`inception_v3.tf_in1k`)."""
    return any(spec.tag == text for spec in list_weights())


def pretrained_metadata(tag: str) -> dict:
    """The model file metadata (`inceptionnet.artifacts`) of the published weights `tag`: model name and options,
    ImageNet class names, the weights' preprocessing; nothing is fetched."""
    spec = get_weights(tag)
    kwargs = {"num_classes": spec.num_classes, "aux_logits": False, "in_chans": 3, **spec.model_kwargs}
    return {"model_name": spec.model, "model_kwargs": kwargs, "class_names": class_names(spec),
            "preprocess": spec.preprocess.to_dict()}


def create_model(name: str, pretrained: bool = False, weights: str | None = None, num_classes: int | None = None,
                 *, features_only: bool = False, out_indices: int | Sequence[int] | None = None,
                 weights_dir: str | os.PathLike | None = None, progress: bool = True, **kwargs) -> nn.Module:
    """Build model `name`, with published weights when `pretrained` (the model's default tag) or
    `weights` (a tag, see `inceptionnet weights`); `name` may itself be a tag (`inception_v3.tf_in1k`).

    `num_classes` other than the weights' gives a fresh classifier (fine-tuning); `features_only` /
    `out_indices` return the trunk's stage maps (see `inceptionnet.models.create_model`). Other
    keyword options go to the model (aux_logits, in_chans, drop_rate...). The model's `weights_spec`
    holds the record loaded (preprocessing, classes). Without weights this is the random-init model.
    """
    spec = resolve_weights(name, pretrained, weights)
    if spec is None:
        return create_random_model(name, num_classes=1000 if num_classes is None else num_classes,
                                   features_only=features_only, out_indices=out_indices, **kwargs)
    if kwargs.get("in_chans", 3) != 3:
        raise WeightsError(f"{spec.tag} has 3 input channels; in_chans={kwargs['in_chans']} cannot load them")
    model = create_random_model(spec.model, num_classes=spec.num_classes, **{**spec.model_kwargs, **kwargs})
    load_pretrained(model, spec, weights_dir, progress)
    if num_classes is not None and num_classes != spec.num_classes:
        model.reset_classifier(num_classes)
    return FeatureExtractor(model, out_indices) if features_only else model
