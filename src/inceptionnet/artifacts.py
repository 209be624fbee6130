"""The one saved-model format, and `load_model` for every file a model can come from.

A model file holds weights plus the metadata needed to use them: format ("inceptionnet-checkpoint"),
version, model_name, model_kwargs (constructor options), class_names, preprocess (`Preprocess.to_dict()`),
and where known layout (the key layout of the weights: inceptionnet, torchvision, timm or cadene), config
(the training run's) and precision. The same keys are written everywhere:
  .pt           torch.save'd dict: the metadata as top-level keys beside "model" (a state_dict); a training
                checkpoint adds "ema" and its training state (`engine/checkpoint.py`)
  .safetensors  the header's string metadata, JSON-encoded where structured
  .onnx         the same strings in metadata_props (`deploy/onnx_model.py`)

Files are recognised by their first bytes, never by their names alone, and read without running code
(`torch.load(..., weights_only=True)`, safetensors, protobuf).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import NotAModelFileError, WeightsError
from .fileio import atomic_write
from .models.registry import Preprocess

# The name version 1 files were written with; it now names the format of every model file.
FORMAT = "inceptionnet-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("model_name", "model_kwargs", "class_names", "preprocess")
META_KEYS = ("format", "version", *REQUIRED_KEYS, "layout", "config", "precision")
JSON_KEYS = ("version", "model_kwargs", "class_names", "preprocess", "config")
EXPECTED = "expected an inceptionnet checkpoint (.pt), a .safetensors written by export/convert, or an .onnx"


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


def is_aux_key(model: nn.Module, key: str) -> bool:
    """True when the state_dict key `key` belongs to one of `model`'s auxiliary heads."""
    return any(key.startswith(name + ".") for name in getattr(model, "aux_head_names", ()))


def stamped(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata keys of `meta` (a checkpoint dict or another file's metadata), with this format and version;
    a ValueError when a required key is missing (a programming error: users never build metadata)."""
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise ValueError(f"model metadata lacks {', '.join(missing)}")
    return {**{key: meta[key] for key in META_KEYS if key in meta}, "format": FORMAT, "version": VERSION}


def encode_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """`meta` as the string map of a safetensors header or ONNX metadata_props: JSON for structured values."""
    return {key: json.dumps(value, default=str) if key in JSON_KEYS else str(value) for key, value in meta.items()}


def decode_metadata(raw: Mapping[str, str], path: str | os.PathLike) -> dict[str, Any]:
    """The inverse of `encode_metadata` for the file `path`, checked: a NotAModelFileError when it lacks our keys,
    a WeightsError when a value is damaged or the format is newer than this version reads."""
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise NotAModelFileError(f"{path} was not written by inceptionnet (no {missing[0]!r} in its metadata): "
                                 f"{EXPECTED}")
    meta: dict[str, Any] = {key: value for key, value in raw.items() if key in META_KEYS}
    for key in JSON_KEYS:
        if key in meta:
            try:
                meta[key] = json.loads(meta[key])
            except json.JSONDecodeError as e:
                raise WeightsError(f"{path}: metadata {key!r} is not valid JSON ({e})") from None
    return checked(meta, path)


def checked(meta: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """`meta` after checking its format and version (files written before these keys existed are version 1)."""
    if meta.get("format", FORMAT) != FORMAT:
        raise NotAModelFileError(f"{path} is a {meta['format']!r} file: {EXPECTED}")
    if int(meta.get("version", VERSION)) > VERSION:
        raise WeightsError(f"{path} was written by a newer inceptionnet (format version {meta['version']}); "
                           f"this one reads version {VERSION}")
    return meta


def write_model(target: str | os.PathLike, kind: str, state_dict: Mapping[str, Tensor], meta: Mapping[str, Any],
                extra: Mapping[str, Any] | None = None) -> None:
    """Write `state_dict` with `meta` (see `stamped`) to `target` as `kind` ("checkpoint": torch.save, with the
    plain-typed `extra` entries beside them; "safetensors"), in place: `save_model` is the atomic writer."""
    meta = stamped(meta)
    if kind == "safetensors":
        from safetensors.torch import save_file

        if extra:
            raise ValueError("a .safetensors file holds weights and metadata only")
        save_file({k: v.detach().contiguous() for k, v in state_dict.items()}, str(target),
                  metadata=encode_metadata(meta))
    else:
        torch.save({**meta, "model": dict(state_dict), **(extra or {})}, target)


def save_model(path: str | os.PathLike, state_dict: Mapping[str, Tensor], meta: Mapping[str, Any],
               extra: Mapping[str, Any] | None = None) -> Path:
    """Write a model file atomically (temp file, fsync, rename): .safetensors for a path ending so, else a .pt
    checkpoint; see `write_model`. Returns the path."""
    kind = "safetensors" if str(path).endswith(".safetensors") else "checkpoint"
    return atomic_write(path, lambda tmp: write_model(tmp, kind, state_dict, meta, extra))


def resolve(source: str | os.PathLike) -> Path:
    """The model file `source` names: itself, or in a run folder best.pt, else last.pt; a WeightsError when
    there is none."""
    path = Path(source)
    if path.is_dir():
        found = [path / name for name in ("best.pt", "last.pt") if (path / name).is_file()]
        if not found:
            raise WeightsError(f"{path} is a folder without best.pt or last.pt")
        path = found[0]
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    return path


def model_kind(source: str | os.PathLike) -> str:
    """What `source` is (a `LoadedModel.kind`): a registered weights tag that is no file, else the kind of the file
    (run folders resolved) recognised by its first bytes; a NotAModelFileError for anything else."""
    from .weights import is_weights_tag

    if not Path(source).exists() and is_weights_tag(str(source)):
        return "weights"
    path = resolve(source)
    with open(path, "rb") as f:
        head = f.read(9)
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    # safetensors: an 8-byte little-endian header length, then the JSON header.
    if head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size:
        return "safetensors"
    # ONNX: a protobuf ModelProto whose first field is ir_version (field 1, varint: tag byte 0x08).
    if head[:1] == b"\x08" and len(head) == 9:
        return "onnx"
    raise NotAModelFileError(f"{path} is not a model file: {EXPECTED}")


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name.split("/", 1)[-1] for name in archive.namelist()]
    except zipfile.BadZipFile:
        raise NotAModelFileError(f"{path} is a damaged zip file: {EXPECTED}") from None
    if "constants.pkl" in names:
        raise NotAModelFileError(f"{path} is a TorchScript file (load it with torch.jit.load): {EXPECTED}")
    if "data.pkl" not in names:
        raise NotAModelFileError(f"{path} is a zip file but not a PyTorch file: {EXPECTED}")
    return "checkpoint"


def read_checkpoint(source: str | os.PathLike) -> dict[str, Any]:
    """The whole dict of the .pt file `source` (a file or run folder): metadata, "model", and what training added;
    read on the CPU with `weights_only=True`, plus "path", the file read."""
    path = resolve(source)
    if model_kind(path) != "checkpoint":
        raise NotAModelFileError(f"{path} is no PyTorch checkpoint: expected a .pt written by inceptionnet")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message suggests weights_only=False, which would run whatever code the file holds.
        raise NotAModelFileError(f"{path} is not a model file: it holds Python objects other than tensors and "
                                 f"plain data, which are never loaded; {EXPECTED}") from None
    except Exception as e:  # damaged files raise many types
        raise WeightsError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise NotAModelFileError(f"{path} is a PyTorch file without inceptionnet metadata (a plain state_dict "
                                 f"gets it from `inceptionnet convert`): {EXPECTED}")
    checked(ckpt, path)
    return {**ckpt, "path": str(path)}


def read_metadata(source: str | os.PathLike) -> dict[str, Any]:
    """The decoded metadata (see the module docstring) of the model `source` names, as `load_model` takes it,
    plus "kind"; a weights tag's comes from the registry, without fetching the weights."""
    kind = model_kind(source)
    if kind == "weights":
        from .weights.pretrained import pretrained_metadata

        meta = pretrained_metadata(str(source))
    elif kind == "onnx":
        from .deploy.onnx_model import read_metadata as read_onnx_metadata

        meta = read_onnx_metadata(resolve(source))
    elif kind == "safetensors":
        meta = decode_metadata(_safetensors_header(resolve(source)), resolve(source))
    else:
        meta = _checkpoint_metadata(read_checkpoint(source))
    return {**meta, "kind": kind}


def _checkpoint_metadata(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    # As JSON gives it (lists, not tuples), so that a .pt and a .safetensors of one model give equal metadata.
    return {key: json.loads(json.dumps(value, default=str)) if key in JSON_KEYS else value
            for key, value in ckpt.items() if key in META_KEYS}


def _safetensors_header(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # a damaged header raises the library's own types
        raise WeightsError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def _safetensors_weights(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # truncated data raises the library's own types
        raise WeightsError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def build_model(meta: Mapping[str, Any], state_dict: Mapping[str, Tensor], origin: str) -> nn.Module:
    """The model `meta` describes, without aux heads, loaded strictly with `state_dict` (converted from the
    metadata's layout; aux weights dropped), in eval mode on the CPU. `origin` names the file in errors."""
    from .models.registry import create_model
    from .weights import load_state_dict

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
        from .deploy.onnx_model import OnnxModel

        path = resolve(source)
        session = OnnxModel(path)
        return _loaded(session, session.meta, str(path), kind)
    if kind == "weights":
        from .weights import pretrained_checkpoint

        ckpt = pretrained_checkpoint(str(source))
        meta, weights, origin = stamped(ckpt), ckpt["model"], str(source)
    elif kind == "safetensors":
        path = resolve(source)
        meta, weights, origin = decode_metadata(_safetensors_header(path), path), _safetensors_weights(path), str(path)
    else:
        ckpt = read_checkpoint(source)
        weights = ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]
        meta, origin = _checkpoint_metadata(ckpt), ckpt["path"]
    return _loaded(build_model(meta, weights, origin), meta, origin, kind)


def _loaded(model: Any, meta: dict[str, Any], source: str, kind: str) -> LoadedModel:
    try:
        preprocess = Preprocess.from_dict(meta["preprocess"])
    except (TypeError, ValueError, AttributeError) as e:
        raise WeightsError(f"{source}: its preprocessing metadata cannot be used ({e})") from None
    return LoadedModel(model, preprocess, list(meta["class_names"]), meta, source, kind)


__all__ = ["FORMAT", "VERSION", "LoadedModel", "build_model",
           "decode_metadata", "encode_metadata", "is_aux_key", "load_model", "model_kind", "read_checkpoint",
           "read_metadata", "resolve", "save_model", "stamped", "write_model"]
