"""ONNX files written by `inceptionnet export` / `quantize`, run by onnxruntime behind the interface of a
PyTorch network, so that evaluation and prediction treat them like checkpoints.

The file's `metadata_props` carry what a deployment needs beside the graph: model name and kwargs,
class names, preprocessing, precision and the training run's config (JSON strings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import WeightsError

# Keys every inceptionnet ONNX file holds; the JSON-valued ones are decoded on reading.
REQUIRED_KEYS = ("model_name", "model_kwargs", "class_names", "preprocess")
JSON_KEYS = ("model_kwargs", "class_names", "preprocess", "config")


def is_onnx(source: Any) -> bool:
    """True for a path ending in .onnx, or a dict made by `read_metadata`."""
    if isinstance(source, dict):
        return source.get("format") == "onnx"
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".onnx"


def decode_metadata(raw: dict[str, str], path: str | os.PathLike) -> dict[str, Any]:
    """Check and decode the string metadata of the ONNX file `path`: JSON values parsed, "precision"
    defaulting to fp32, plus "format": "onnx" and "path". A file not written by inceptionnet is a WeightsError."""
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise WeightsError(f"{path} was not written by inceptionnet export or quantize (no {missing[0]!r} in its "
                           "metadata_props)")
    meta: dict[str, Any] = dict(raw)
    try:
        for key in JSON_KEYS:
            if key in meta:
                meta[key] = json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path}: metadata {key!r} is not valid JSON ({e})") from None
    meta.setdefault("precision", "fp32")
    return {**meta, "format": "onnx", "path": str(path)}


def encode_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """The inverse of `decode_metadata`: every value a string, JSON for the structured ones."""
    skip = ("format", "path")
    return {key: json.dumps(value) if key in JSON_KEYS else str(value) for key, value in meta.items()
            if key not in skip}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded inceptionnet metadata of the ONNX file `path` (see `decode_metadata`); the graph is not run."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # a damaged or foreign file raises many types
        raise WeightsError(f"cannot read ONNX model {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return decode_metadata({p.key: p.value for p in proto.metadata_props}, path)


def write_metadata(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Replace the metadata_props of the ONNX file `path` (in place: call it on a file not yet published)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in encode_metadata(meta).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


class OnnxModel:
    """An inceptionnet ONNX file in an onnxruntime CPU session, called like the PyTorch network it came from:
    (N, C, H, W) float tensor -> (N, num_classes) float32 logits tensor (on the CPU).

    `threads` sets onnxruntime's intra-op threads (None: its default, one per physical core).
    """

    device = torch.device("cpu")

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime

        self.meta = read_metadata(path)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime reports invalid graphs with its own exception types
            raise WeightsError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.precision = str(self.meta["precision"])
        self.name = str(self.meta["model_name"])

    def __call__(self, x: Tensor) -> Tensor:
        array = np.ascontiguousarray(x.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

    def eval(self) -> OnnxModel:
        """Sessions have no training mode: returns self, like `nn.Module.eval`."""
        return self
