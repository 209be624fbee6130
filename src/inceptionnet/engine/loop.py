"""One training epoch and one evaluation pass, as plain functions with explicit arguments.

`train_one_epoch` trains the epoch `state.epoch` (or its remainder after a resume) and `evaluate`
scores a network on a loader; the `Trainer` (train.py) builds what they take and orchestrates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import TrainingError
from ..recipes import Recipe
from ..runtime import Precision
from . import distributed as dist
from .losses import AuxLoss
from .runlog import RunLogger
from .state import EpochStats, RunState

Skipped = list[tuple[str, str]]


@dataclass
class TrainStep:
    """How one batch is trained: `model` is the network as trained (the DDP wrapper under torchrun),
    `criterion` the loss with the aux heads' terms, `mixer` MixUp/CutMix or None."""

    model: nn.Module
    criterion: AuxLoss
    precision: Precision
    device: torch.device
    channels_last: bool
    aux_logits: bool
    mixer: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None

    def to_device(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) images and (N,) targets on the device, images in the training memory format."""
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, targets.to(self.device, non_blocking=True)

    def loss(self, model: nn.Module, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(loss with the aux heads' terms, main-head loss, logits) of `model` on one (N, C, H, W) batch under
        the run's precision; `targets` are (N,) labels or (N, classes) soft targets. The training step and
        the budget's step timing both use it."""
        with self.precision.autocast():
            logits, aux = model(images, with_aux=True) if self.aux_logits else (model(images), ())
            loss, main = self.criterion(logits.float(), [a.float() for a in aux], targets)
        return loss, main, logits


def train_one_epoch(state: RunState, step: TrainStep, loader: Any, recipe: Recipe, batches_per_epoch: int,
                    log: RunLogger, note_skipped: Callable[[Skipped], None],
                    after_step: Callable[[], None]) -> dict[str, float]:
    """Train epoch `state.epoch` from batch `state.batch_in_epoch` up to batch `batches_per_epoch` (fewer than
    the loader holds in a last partial epoch); return the epoch's training metrics (loss, accuracy, lr, data
    and compute seconds). `loader` yields `Batch`es and has `set_epoch(epoch, skip)`
    and `batch_size`; `after_step()` runs after each optimizer step (step checkpoints)."""
    if state.batch_in_epoch == 0:
        state.stats = EpochStats()
    loader.set_epoch(state.epoch, state.batch_in_epoch * loader.batch_size)
    with torch.random.fork_rng(devices=[]):
        # Starting a DataLoader iterator draws a worker seed from the torch generator; keep that draw out
        # of the training stream so a resumed run continues the same stream from its saved state.
        batches = iter(loader)
    bar = log.progress(range(state.batch_in_epoch, batches_per_epoch),
                       desc=f"epoch {state.epoch + 1}/{recipe.epochs:g}")
    failed_in_row, pending = 0, False
    stats, tick = state.stats, time.perf_counter()
    for index in bar:
        batch = next(batches)
        loaded = time.perf_counter()
        note_skipped(batch.skipped)
        state.batch_in_epoch = index + 1
        ends_window = state.batch_in_epoch % recipe.accum_steps == 0 or state.batch_in_epoch == batches_per_epoch
        with dist.grad_sync(step.model, sync=ends_window):
            outcome = _forward_backward(state, step, recipe, batch.images, batch.targets)
        if outcome is False:
            failed_in_row += 1
            log.warn(f"non-finite loss at epoch {state.epoch + 1} batch {index + 1}: skipped "
                     f"({failed_in_row} in a row)")
            if failed_in_row >= recipe.max_nonfinite:
                raise TrainingError(f"the loss was non-finite for {failed_in_row} batches in a row; "
                                    "lower --lr, try --precision fp32 or check the data")
        elif outcome:
            failed_in_row, pending = 0, True
        # A window whose every batch was skipped (non-finite or unreadable) makes no update.
        stepped = ends_window and pending
        if stepped:
            _optimizer_step(state, recipe.grad_clip)
            pending = False
        done = time.perf_counter()
        stats.data_time += loaded - tick
        stats.compute_time += done - loaded
        if stepped:
            bar.set_postfix(loss=f"{stats.loss_sum / max(stats.count, 1):.3f}", data=f"{loaded - tick:.3f}s",
                            compute=f"{done - loaded:.3f}s")
            after_step()
        tick = time.perf_counter()
    bar.close()
    sums = dist.all_reduce_sum([stats.loss_sum, stats.correct, stats.count]).tolist()
    return {"train_loss": sums[0] / max(sums[2], 1), "train_acc": sums[1] / max(sums[2], 1),
            "lr": state.optimizer.param_groups[0]["lr"], "data_time": stats.data_time,
            "compute_time": stats.compute_time}


def _forward_backward(state: RunState, step: TrainStep, recipe: Recipe, images: Tensor,
                      targets: Tensor) -> bool | None:
    """Forward and backward of one micro-batch. Returns True when gradients were added, False for a
    non-finite loss (skipped and counted), None when every rank's batch was empty (all files unreadable)."""
    if not dist.on_every_rank(targets.numel() > 0):
        return None
    images, targets = step.to_device(images, targets)
    # Mixed batches train on soft targets; accuracy is still counted against each image's own label.
    images, soft_targets = step.mixer(images, targets) if step.mixer is not None else (images, targets)
    loss, main, logits = step.loss(step.model, images, soft_targets)
    if not dist.on_every_rank(bool(torch.isfinite(loss))):
        state.nonfinite_total += 1
        return False
    scaled = loss / recipe.accum_steps
    if state.scaler is not None:
        scaled = state.scaler.scale(scaled)
    scaled.backward()
    n = targets.numel()
    state.stats.loss_sum += float(main.detach()) * n
    state.stats.correct += float((logits.detach().argmax(1) == targets).sum())
    state.stats.count += n
    state.stats.images += n
    return True


def _optimizer_step(state: RunState, grad_clip: float) -> None:
    """Clip, step, update the scaler, schedule and weight average, then clear the gradients."""
    scaler, optimizer = state.scaler, state.optimizer
    if grad_clip > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    state.step += 1


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, num_classes: int, step: TrainStep,
             note_skipped: Callable[[Skipped], None]) -> dict[str, Any]:
    """Top-1 (`acc`), top-5, cross-entropy, image count, balanced accuracy (`bacc`, the mean recall of the
    classes present) and per-class `recall` (a list of `num_classes`) of `model` over `batches` of
    (N, C, H, W) images, run on `step`'s device and precision, summed over every rank."""
    model.eval()
    k = min(5, num_classes)
    sums = torch.zeros(4 + 2 * num_classes, dtype=torch.float64)
    for batch in batches:
        note_skipped(batch.skipped)
        images, targets = step.to_device(batch.images, batch.targets)
        with step.precision.autocast():
            logits = model(images).float()
        top = logits.topk(k, dim=1).indices
        hits = top[:, 0] == targets
        loss = nn.functional.cross_entropy(logits, targets, reduction="sum")
        counts = torch.tensor([float(hits.sum()), float((top == targets[:, None]).any(1).sum()), float(loss),
                               targets.numel()], dtype=torch.float64)
        sums += torch.cat([counts, torch.bincount(targets[hits].cpu(), minlength=num_classes).double(),
                           torch.bincount(targets.cpu(), minlength=num_classes).double()])
    sums = dist.all_reduce_sum(sums.tolist()).cpu()
    n = max(float(sums[3]), 1)
    hits_per_class, images_per_class = sums[4:4 + num_classes], sums[4 + num_classes:]
    recall = hits_per_class / images_per_class.clamp(min=1)
    present = images_per_class > 0
    bacc = float(recall[present].sum()) / max(int(present.sum()), 1)
    return {"acc": float(sums[0]) / n, f"top{k}": float(sums[1]) / n, "loss": float(sums[2]) / n,
            "images": int(sums[3]), "bacc": bacc, "recall": recall.tolist()}
