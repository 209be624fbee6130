"""Snapshots of every random number generator, for exact resume.

Exact resume needs three things: the generators as they were at the checkpoint (`rng_state` /
`restore_rng_state`, stored as tensors and plain types so `weights_only=True` loads them), the same
sample order continued at the same position (`distributed.TrainSampler`), and augmentation randomness
that does not depend on which worker or which earlier samples ran (`data.loaders`: each sample is seeded
from (seed, epoch, index)).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    """The state of every generator as tensors and plain types (loadable with `weights_only=True`)."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }


def restore_rng_state(state: dict) -> None:
    """Put every generator back to a snapshot taken by `rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
