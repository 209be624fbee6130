"""Starting a run from saved or published weights: their preprocessing, the constructor options they need,
and loading them into a fresh model (with a new classifier head when the recipe asks for one)."""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from ..errors import PartialLoadWarning, WeightsError
from ..models import ModelSpec, Preprocess


def start_preprocess(spec: ModelSpec, weights: str | None) -> Preprocess:
    """The model's preprocessing, or that of the published weights it starts from (their mean/std, range and
    channel order are what the weights expect)."""
    from ..weights import get_weights, is_weights_tag

    if weights and is_weights_tag(weights):
        return get_weights(weights).preprocess
    return spec.preprocess


def start_model_kwargs(weights: str | None) -> dict[str, Any]:
    """Constructor options the start weights need (a published file with a folded input transform)."""
    from ..weights import get_weights, is_weights_tag

    return dict(get_weights(weights).model_kwargs) if weights and is_weights_tag(weights) else {}


def load_start_weights(model: nn.Module, weights: str, source: str, new_head: bool, progress: bool,
                       warn) -> None:
    """Load `weights` (a registered tag, or a file in `source`'s layout) into `model`. With `new_head` the
    classifier layers may differ: they are re-initialised for the model's classes; any other mismatch is a
    `WeightsError`. `warn(message)` receives the loader's warnings other than the partial load just checked."""
    from ..weights import get_weights, is_weights_tag, load_state_dict, load_weights, pretrained_state_dict

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if is_weights_tag(weights):  # published weights: fetched, converted, input folded
            state = pretrained_state_dict(model, get_weights(weights), progress=progress)
            report = load_state_dict(model, state, strict=not new_head, origin=weights)
        else:
            report = load_weights(model, weights, source=source, strict=not new_head)
    head_prefixes = tuple(name + "." for name in model.classifier_names)
    other = [k.split(" ")[0] for k in report.missing + report.unexpected + report.mismatched]
    if [k for k in other if not k.startswith(head_prefixes)]:
        raise WeightsError(f"{weights} does not fit {model.spec.name} beyond its classifier: "
                           f"{report.describe()}")
    if new_head:
        model.reset_classifier(model.num_classes)
    for warning in caught:
        if not issubclass(warning.category, PartialLoadWarning):
            warn(str(warning.message))
