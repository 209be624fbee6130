"""Model files: `load_model` for every file a model can come from, `read_metadata` for what one holds, and
`save_weights` for a model's weights in any layout as a model file. The format itself is `format.py`;
ONNX files are `onnx.py`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..errors import WeightsError
from ..models.registry import Preprocess, create_model
from ..weights import export_state_dict, is_weights_tag, load_state_dict
from ..weights.pretrained import create_model as create_pretrained
from ..weights.pretrained import pretrained_metadata
from ..weights.registry import imagenet_classes
from .format import (
    FORMAT,
    VERSION,
    checkpoint_metadata,
    decode_metadata,
    file_kind,
    read_checkpoint,
    resolve,
    safetensors_header,
    safetensors_weights,
    save_model,
    stamped,
)
from .onnx import OnnxModel, read_onnx_metadata, write_onnx_metadata


@dataclass
class LoadedModel:
    """A model ready for inference: `model` maps (N, C, S, S) float images to (N, num_outputs) logits (an eval-mode
    nn.Module without aux heads, or an `OnnxModel` session); `preprocess` and `class_names` say how to feed it and
    read it; `meta` is the file's decoded metadata; `source` is the file (or weights tag) it came from and `kind`
    one of "checkpoint" (.pt), "safetensors", "onnx" or "weights" (a weights tag)."""

    model: Any
    preprocess: Preprocess
    class_names: list[str]
    meta: dict[str, Any]
    source: str
    kind: str


def model_kind(source: str | os.PathLike) -> str:
    """What `source` is (a `LoadedModel.kind`): a registered weights tag that is no file, else the kind of the file
    (run folders resolved) recognised by its first bytes; a NotAModelFileError for anything else."""
    if not Path(source).exists() and is_weights_tag(str(source)):
        return "weights"
    return file_kind(resolve(source))


def read_metadata(source: str | os.PathLike) -> dict[str, Any]:
    """The decoded metadata (see the module docstring) of the model `source` names, as `load_model` takes it,
    plus "kind"; a weights tag's comes from the registry, without fetching the weights."""
    kind = model_kind(source)
    if kind == "weights":
        meta = pretrained_metadata(str(source))
    elif kind == "onnx":
        meta = read_onnx_metadata(resolve(source))
    elif kind == "safetensors":
        path = resolve(source)
        meta = decode_metadata(safetensors_header(path), path)
    else:
        meta = checkpoint_metadata(read_checkpoint(source))
    return {**meta, "kind": kind}


def build_model(meta: Mapping[str, Any], state_dict: Mapping[str, Tensor], origin: str) -> nn.Module:
    """The model `meta` describes, without aux heads, loaded strictly with `state_dict` (converted from the
    metadata's layout; aux weights dropped), in eval mode on the CPU. `origin` names the file in errors."""
    model = create_model(meta["model_name"], **{**meta["model_kwargs"], "aux_logits": False})
    load_state_dict(model, dict(state_dict), meta.get("layout") or "inceptionnet", strict=True, aux="drop",
                    origin=origin)
    return model.eval()


def load_model(source: str | os.PathLike) -> LoadedModel:
    """Load the model `source` names for inference: a training checkpoint .pt (its EMA weights when it has them),
    a run folder (best.pt, else last.pt), a .safetensors or .pt written by export or convert, an .onnx written by
    export or quantize (an onnxruntime session; onnxruntime is imported only then), or a registered weights tag.
    Anything else is a NotAModelFileError naming the file; see `LoadedModel`."""
    kind = model_kind(source)
    if kind == "onnx":
        path = resolve(source)
        session = OnnxModel(path)
        return _loaded(session, session.meta, str(path), kind)
    if kind == "weights":
        tag = str(source)
        return _loaded(create_pretrained(tag, aux_logits=False).eval(), stamped(pretrained_metadata(tag)), tag, kind)
    if kind == "safetensors":
        path = resolve(source)
        meta, weights, origin = decode_metadata(safetensors_header(path), path), safetensors_weights(path), str(path)
    else:
        ckpt = read_checkpoint(source)
        weights = ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]
        meta, origin = checkpoint_metadata(ckpt), ckpt["path"]
    return _loaded(build_model(meta, weights, origin), meta, origin, kind)


def _loaded(model: Any, meta: dict[str, Any], source: str, kind: str) -> LoadedModel:
    try:
        preprocess = Preprocess.from_dict(meta["preprocess"])
    except (TypeError, ValueError, AttributeError) as e:
        raise WeightsError(f"{source}: its preprocessing metadata cannot be used ({e})") from None
    return LoadedModel(model, preprocess, list(meta["class_names"]), meta, source, kind)


def save_weights(model: nn.Module, path: str | os.PathLike, source: str = "inceptionnet",
                 class_names: Sequence[str] | None = None) -> Path:
    """Write `model`'s weights in `source`'s layout, atomically: safetensors for a `.safetensors` path, else
    torch.save. Both carry the model file metadata of `inceptionnet.artifacts` (so eval and predict load them),
    with `class_names` (default: ImageNet's for 1000 classes, else the indices); a .pt in a peer's layout
    stays the plain state_dict that the peer's own code loads."""
    state = export_state_dict(model, source)
    safetensors = str(path).endswith(".safetensors")
    with_metadata = getattr(model, "spec", None) is not None and (safetensors or source == "inceptionnet")
    return save_model(path, state, model_metadata(model, source, class_names) if with_metadata else None)


def model_metadata(model: nn.Module, layout: str = "inceptionnet",
                   class_names: Sequence[str] | None = None) -> dict:
    """The model file metadata (`inceptionnet.artifacts`) of a registry-built `model` whose weights are saved in
    `layout`: its constructor options, `class_names` (see `save_weights`), the preprocessing of its published
    weights or else of its model spec."""
    if class_names is None:
        class_names = imagenet_classes() if model.num_classes == 1000 else [str(i) for i in range(model.num_classes)]
    preprocess = getattr(model, "weights_spec", model.spec).preprocess
    return {"model_name": model.spec.name, "layout": layout, "class_names": list(class_names),
            "model_kwargs": {"num_classes": model.num_classes, "aux_logits": model.aux_logits,
                             "in_chans": model.in_chans},
            "preprocess": preprocess.to_dict()}


__all__ = ["FORMAT", "VERSION", "LoadedModel", "OnnxModel", "build_model", "load_model", "model_kind",
           "read_checkpoint", "read_metadata", "read_onnx_metadata", "resolve", "save_model", "save_weights",
           "stamped", "write_onnx_metadata"]
