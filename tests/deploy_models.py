"""Small checkpoints and ONNX files for the deploy tests (imported by test modules, not collected)."""

import io
import struct
import zlib
from pathlib import Path

import torch
from PIL import Image

from inceptionnet import create_model, get_spec
from inceptionnet.engine.checkpoint import save_checkpoint
from peer_parity import randomize_bn

CLASSES = ["class0", "class1", "class2"]


def make_checkpoint(path: Path, classes=tuple(CLASSES), name: str = "inception_cifar",
                    logit_scale: float = 1.0) -> Path:
    """A checkpoint of `name` at its default input size, random weights with non-trivial BN statistics
    (so BN folding in the export changes the weights), whose class names are those of `make_image_folder`.
    `logit_scale` multiplies the classifier's weights: above 1, a random model with confident answers."""
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, num_classes=len(classes)))
    with torch.no_grad():
        for classifier in model.classifier_names:
            model.get_submodule(classifier).weight.mul_(logit_scale)
    return save_checkpoint(path, {
        "model_name": name, "model_kwargs": {"num_classes": len(classes)}, "class_names": list(classes),
        "preprocess": get_spec(name).preprocess.to_dict(), "model": model.state_dict(), "ema": None})


def png_bytes(size=(50, 40), colour=(200, 30, 30)) -> bytes:
    """A small RGB PNG, in memory."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
