"""inceptionnet: the Inception family of image classifiers (GoogLeNet, BN-Inception, Inception-v3/v4,
Inception-ResNet), paper-exact and weight-compatible with torchvision and timm."""

from .artifacts import save_weights
from .errors import ConfigError, DataError, InceptionNetError, InputSizeError, WeightsError
from .fast import optimize
from .models import ModelSpec, Preprocess, get_spec, list_models
from .weights import create_model, export_state_dict, get_weights, list_weights, load_weights

__version__ = "0.1.0"


def train(*args, **kwargs):
    """Train a model; see `inceptionnet.train_api.train` (imported on first use: it pulls in the engine)."""
    from .train_api import train as _train

    return _train(*args, **kwargs)


def __getattr__(name: str):
    # evaluate, predict, export: callable submodules, imported on first use (they pull in torchvision).
    if name in ("evaluate", "predict", "export"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigError", "DataError", "InceptionNetError", "InputSizeError", "ModelSpec", "Preprocess",
    "WeightsError", "create_model", "export_state_dict", "get_spec", "get_weights", "list_models", "list_weights",
    "load_weights",
    "save_weights", "optimize", "train", "evaluate", "predict", "export",
]
