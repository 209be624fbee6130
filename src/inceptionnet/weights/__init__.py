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
    save_weights,
)
from .download import cached_path, fetch_weights, is_offline
from .pretrained import create_model, load_pretrained, resolve_weights
from .registry import WEIGHTS, WeightSpec, class_names, default_weights, get_weights, list_weights

__all__ = [
    "SOURCES", "WEIGHTS", "LoadReport", "WeightSpec", "cached_path", "class_names", "convert_state_dict",
    "create_model", "default_weights", "export_state_dict", "fetch_weights", "fold_input_affine", "get_weights",
    "is_offline", "list_weights", "load_pretrained", "load_state_dict", "load_weights", "read_state_dict",
    "resolve_weights", "save_weights",
]
