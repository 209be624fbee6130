"""Pure nn.Modules of the Inception family and their registry."""

from .registry import ModelSpec, Preprocess, create_model, get_spec, list_models, register

__all__ = ["ModelSpec", "Preprocess", "create_model", "get_spec", "list_models", "register"]
