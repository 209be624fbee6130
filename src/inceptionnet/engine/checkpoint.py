"""Training checkpoints: a model file of `inceptionnet.artifacts` (metadata and "model" weights) with the
training state beside them: "ema" (state_dict or None) and whatever the engine adds (optimizer, scheduler,
scaler, epoch, step, rng, config, metrics). Written atomically, read with `weights_only=True`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..artifacts.format import META_KEYS, read_checkpoint, save_model


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (plain types and tensors only: model_name, model_kwargs, class_names, preprocess, "model"
    and the training state) to `path` atomically: temp file, fsync, rename."""
    rest = dict(state)
    weights = rest.pop("model")
    meta = {key: rest.pop(key) for key in META_KEYS if key in rest}
    return save_model(path, weights, meta, extra=rest)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The dict `save_checkpoint` wrote to `path` (a file, or a run folder: best.pt, else last.pt), read onto
    the CPU with `weights_only=True`, plus "path", the file read."""
    return read_checkpoint(path)
