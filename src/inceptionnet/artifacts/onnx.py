"""ONNX model files written by `inceptionnet export` / `quantize`: their metadata, and an onnxruntime session
behind the interface of a PyTorch network, so that evaluation and prediction treat them like checkpoints.

The file's `metadata_props` carry the metadata of every inceptionnet model file (`artifacts.format`):
model name and kwargs, class names, preprocessing, precision and the training run's config (strings, JSON
where structured).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import WeightsError
from .format import decode_metadata, encode_metadata, stamped


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded inceptionnet metadata of the ONNX file `path` (see `artifacts.format`; "precision"
    defaults to fp32); the graph is not run."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # a damaged or foreign file raises many types
        raise WeightsError(f"cannot read ONNX model {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    meta = decode_metadata({p.key: p.value for p in proto.metadata_props}, path)
    return {"precision": "fp32", **meta}


def write_onnx_metadata(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Replace the metadata_props of the ONNX file `path` (in place: call it on a file not yet published)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in encode_metadata(stamped(meta)).items():
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

        self.meta = read_onnx_metadata(path)
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
