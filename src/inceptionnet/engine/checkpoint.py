"""Checkpoint files: written atomically, read with `weights_only=True`, rebuilt into models.

A checkpoint is a dict of plain types and tensors:
  format, version, model_name, model_kwargs (num_classes, aux_logits, in_chans, ...), class_names,
  preprocess (Preprocess.to_dict()), model (state_dict), ema (state_dict or None), and whatever the
  training engine adds (optimizer, scheduler, scaler, epoch, step, rng, config, metrics).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError
from ..fileio import atomic_write
from ..models.registry import Preprocess, create_model

FORMAT = "inceptionnet-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (plain types and tensors only) to `path` atomically: temp file, fsync, rename."""
    state = {"format": FORMAT, "version": VERSION, **state}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, with `weights_only=True`, onto the CPU. A registered
    weights tag (`inception_v3.tf_in1k`) that is no file gives those published weights as a checkpoint."""
    from ..weights import is_weights_tag, pretrained_checkpoint

    if not Path(path).exists() and is_weights_tag(str(path)):
        return {"format": FORMAT, "version": VERSION, **pretrained_checkpoint(str(path))}
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # damaged or foreign files raise many types
        raise WeightsError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise WeightsError(f"{path} is not an inceptionnet checkpoint (for a plain state_dict use "
                           "`inceptionnet convert` or load_weights)")
    ckpt["path"] = str(path)
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any] | str | os.PathLike, use_ema: bool = True,
                          aux_logits: bool = False) -> tuple[nn.Module, Preprocess, list[str]]:
    """Rebuild the model of a checkpoint (EMA weights when present and `use_ema`), in eval mode.

    Returns (model, preprocess, class_names). Aux heads are left out unless `aux_logits`.
    """
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    kwargs = dict(ckpt["model_kwargs"])
    kwargs["aux_logits"] = aux_logits
    model = create_model(ckpt["model_name"], **kwargs)
    state = ckpt.get("ema") if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not _is_aux(model, k)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"checkpoint {ckpt.get('path', '')} does not fit {ckpt['model_name']}: "
                           f"{str(e).splitlines()[0]}") from None
    model.eval()
    return model, Preprocess.from_dict(ckpt["preprocess"]), list(ckpt["class_names"])


def _is_aux(model: nn.Module, key: str) -> bool:
    return any(key.startswith(name + ".") for name in getattr(model, "aux_head_names", ()))
