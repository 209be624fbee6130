"""The one saved-model format: the metadata every model file carries, written the same way into .pt and
.safetensors (and ONNX, `artifacts.onnx`), recognising a model file by its first bytes, and reading it.

A model file holds weights plus the metadata needed to use them: format ("inceptionnet-checkpoint"),
version, model_name, model_kwargs (constructor options), class_names, preprocess (`Preprocess.to_dict()`),
and where known layout (the key layout of the weights: inceptionnet, torchvision, timm or cadene), config
(the training run's) and precision. The same keys are written everywhere:
  .pt           torch.save'd dict: the metadata as top-level keys beside "model" (a state_dict); a training
                checkpoint adds "ema" and its training state (`engine/checkpoint.py`)
  .safetensors  the header's string metadata, JSON-encoded where structured
  .onnx         the same strings in metadata_props (`artifacts.onnx`)

Files are recognised by their first bytes, never by their names alone, and read without running code
(`torch.load(..., weights_only=True)`, safetensors, protobuf).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import NotAModelFileError, WeightsError
from ..fileio import atomic_write

# The name version 1 files were written with; it now names the format of every model file.
FORMAT = "inceptionnet-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("model_name", "model_kwargs", "class_names", "preprocess")
META_KEYS = ("format", "version", *REQUIRED_KEYS, "layout", "config", "precision")
JSON_KEYS = ("version", "model_kwargs", "class_names", "preprocess", "config")
EXPECTED = "expected an inceptionnet checkpoint (.pt), a .safetensors written by export/convert, or an .onnx"


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


def write_model(target: str | os.PathLike, kind: str, state_dict: Mapping[str, Tensor],
                meta: Mapping[str, Any] | None, extra: Mapping[str, Any] | None = None) -> None:
    """Write `state_dict` with `meta` (see `stamped`) to `target` as `kind` ("checkpoint": torch.save, with the
    plain-typed `extra` entries beside them; "safetensors"), in place: `save_model` is the atomic writer.
    `meta` None writes the bare weights (a peer's layout, read by the peer's own loader)."""
    if kind == "safetensors":
        from safetensors.torch import save_file

        if extra:
            raise ValueError("a .safetensors file holds weights and metadata only")
        save_file({k: v.detach().contiguous() for k, v in state_dict.items()}, str(target),
                  metadata=None if meta is None else encode_metadata(stamped(meta)))
    elif meta is None:
        torch.save(dict(state_dict), target)
    else:
        torch.save({**stamped(meta), "model": dict(state_dict), **(extra or {})}, target)


def save_model(path: str | os.PathLike, state_dict: Mapping[str, Tensor], meta: Mapping[str, Any] | None,
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


def file_kind(path: Path) -> str:
    """What the model file `path` is, recognised by its first bytes: "checkpoint" (.pt), "safetensors" or
    "onnx"; a NotAModelFileError for anything else."""
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
    if file_kind(path) != "checkpoint":
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


def checkpoint_metadata(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata keys of the checkpoint dict `ckpt`."""
    # As JSON gives it (lists, not tuples), so that a .pt and a .safetensors of one model give equal metadata.
    return {key: json.loads(json.dumps(value, default=str)) if key in JSON_KEYS else value
            for key, value in ckpt.items() if key in META_KEYS}


def safetensors_header(path: Path) -> dict[str, str]:
    """The string metadata of the .safetensors file `path` (its tensors are not read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # a damaged header raises the library's own types
        raise WeightsError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def safetensors_weights(path: Path) -> dict[str, Tensor]:
    """The tensors of the .safetensors file `path`, on the CPU."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # truncated data raises the library's own types
        raise WeightsError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
