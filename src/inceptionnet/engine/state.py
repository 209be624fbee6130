"""`RunState`: exactly what a training checkpoint saves, and nothing else.

A checkpoint is the model part of the one saved-model format (name and constructor arguments, class
names, preprocessing, weights and their average) plus the training state: optimizer, scheduler, grad
scaler, the position in the run (epoch, batch inside it, optimizer step), the running sums of the
current epoch, the best validation so far, the validation/checkpoint cadence, and the RNG states.
`state_dict()` writes it as plain types and tensors (loadable with `weights_only=True`);
`load_state_dict()` puts a run back where the checkpoint left it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..models import Preprocess
from .cadence import Cadence


@dataclass
class EpochStats:
    """Running sums of the current training epoch (kept in step checkpoints so resumed metrics match)."""

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    data_time: float = 0.0
    compute_time: float = 0.0
    images: float = 0.0

    @property
    def train_seconds(self) -> float:
        """Seconds spent loading and computing the batches of this epoch so far."""
        return self.data_time + self.compute_time


@dataclass
class RunState:
    """The live objects of a run and its position; `state_dict()` is the checkpoint.

    `model` is the unwrapped network (not the DDP wrapper), `ema` its weight average or None, `scaler` the
    fp16 GradScaler or None. `epoch` counts finished epochs, `batch_in_epoch` the batches done in the
    current one, `step` the optimizer steps. `skipped` maps each unusable file to its reason.
    """

    model_name: str
    model_kwargs: dict[str, Any]
    class_names: list[str]
    preprocess: Preprocess
    model: nn.Module
    ema: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    cadence: Cadence
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    stats: EpochStats = field(default_factory=EpochStats)
    best_top1: float = -1.0
    best_epoch: int = 0
    steps_seconds: float = 0.0
    nonfinite_total: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def model_meta(self) -> dict[str, Any]:
        """The model file metadata of the run's network: name and constructor options, classes, preprocessing."""
        return {"model_name": self.model_name, "model_kwargs": self.model_kwargs, "class_names": self.class_names,
                "preprocess": self.preprocess.to_dict()}

    def model_dict(self) -> dict[str, Any]:
        """The model part of the checkpoint: what eval, predict and export read."""
        return {**self.model_meta(), "model": self.model.state_dict(),
                "ema": self.ema.module.state_dict() if self.ema is not None else None}

    def state_dict(self, rng: dict, config: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint: the model part, then the training state; `rng` is `rng_state()`, `config` the
        run's configuration (saved alongside so a checkpoint says how it was trained)."""
        return {
            **self.model_dict(),
            "ema_n_averaged": self.ema.n_averaged if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "epoch_stats": dataclasses.asdict(self.stats),
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "cadence": self.cadence.state_dict(),
            "steps_seconds": self.steps_seconds,
            "nonfinite_total": self.nonfinite_total,
            "skipped": sorted(self.skipped.items()),
            "rng": rng,
            "config": config,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Put the live objects and the position back to checkpoint `ckpt` (RNG and per-rank sums are the
        caller's: they depend on the number of processes)."""
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
            self.ema.n_averaged.copy_(ckpt["ema_n_averaged"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt["scaler"] is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.batch_in_epoch, self.step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
        self.best_top1, self.best_epoch = ckpt["best_top1"], ckpt["best_epoch"]
        self.cadence.load_state_dict(ckpt["cadence"])
        self.steps_seconds = ckpt["steps_seconds"]
        self.nonfinite_total = ckpt["nonfinite_total"]
        self.skipped.update(dict(ckpt["skipped"]))

    def eval_model(self) -> nn.Module:
        """The network that is evaluated and kept as best: the weight average when the run has one."""
        return self.ema.module if self.ema is not None else self.model
