"""Small checkpoints and ONNX files for the deploy tests (imported by test modules, not collected)."""

from pathlib import Path

import torch

from inceptionnet import create_model, get_spec
from inceptionnet.engine.checkpoint import save_checkpoint
from peer_parity import randomize_bn

CLASSES = ["class0", "class1", "class2"]


def make_checkpoint(path: Path, classes=tuple(CLASSES), name: str = "inception_cifar") -> Path:
    """A checkpoint of `name` at its default input size, random weights with non-trivial BN statistics
    (so BN folding in the export changes the weights), whose class names are those of `make_image_folder`."""
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, num_classes=len(classes)))
    return save_checkpoint(path, {
        "model_name": name, "model_kwargs": {"num_classes": len(classes)}, "class_names": list(classes),
        "preprocess": get_spec(name).preprocess.to_dict(), "model": model.state_dict(), "ema": None})
