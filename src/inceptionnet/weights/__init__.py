"""Weights: the registry of published files (tags), download + cache + hash check, and conversion
to and from the torchvision, timm and Cadene layouts."""

from .convert import (
    SOURCES,
    LoadReport,
    convert_state_dict,
    export_state_dict,
    fold_input_affine,
    load_state_dict,
    load_weights,
    read_state_dict,
)
from .download import cached_path, fetch_weights, is_offline
from .pretrained import (
    create_model,
    is_weights_tag,
    load_pretrained,
    pretrained_state_dict,
    resolve_weights,
)
from .registry import WEIGHTS, WeightSpec, class_names, default_weights, get_weights, list_weights

__all__ = [
    "LoadReport", "SOURCES", "WEIGHTS", "WeightSpec", "cached_path", "class_names", "convert_state_dict",
    "create_model", "default_weights", "export_state_dict", "fetch_weights", "fold_input_affine", "get_weights",
    "is_offline", "is_weights_tag", "list_weights", "load_pretrained", "load_state_dict", "load_weights",
    "pretrained_state_dict", "read_state_dict", "resolve_weights",
]
