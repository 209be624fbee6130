"""Pure nn.Modules of the Inception family and their registry.

The registry comes first; each family then registers its names as it is imported, so whatever imports
`inceptionnet.models` (or anything in it, which imports this package first) sees every model.
"""

from . import bn_inception, compact, googlenet, inception_resnet, inception_v3, inception_v4, resnet  # noqa: E402, F401, I001
from .registry import ModelSpec, Preprocess, create_model, get_spec, list_models, register, register_model

__all__ = ["ModelSpec", "Preprocess", "create_model", "get_spec", "list_models", "register", "register_model"]
