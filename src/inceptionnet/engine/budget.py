"""`--budget`: parse a duration, and fit the number of epochs to a wall-clock budget.

Before training, a few forward-backward passes on a copy of the model and a few decoded samples give a
first step-time estimate: a budget that cannot hold one epoch is refused then, before any training. After
every epoch the median of the measured epoch times (training, validation and checkpoint; the first epoch,
which also warms caches up, only until there are others) replaces the estimate and the epoch count is set
again. The count may end in a fraction: the last epoch then runs that share of its batches, so a budget
that holds only a few epochs still ends on time (whole epochs would miss it by up to half an epoch). The
schedule reads `recipe.epochs` at every step, so the cosine ends exactly at the end of the last (partial)
epoch instead of being cut off, and a schedule that has ended is never extended.
"""

from __future__ import annotations

import copy
import math
import re
import statistics
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")
# Share of the budget kept for what follows the last epoch (final report, test split, curves).
TAIL_SHARE = 0.01
# A budget that shortens the run also shortens the warmup to at most this share of it, so the cosine still runs.
MAX_WARMUP_SHARE = 0.2


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration: "90s", "10m", "1h", "1h30m", "2.5m" or a plain number of seconds.

    Raises `ConfigError` (one line naming --budget) for anything else or a duration that is not positive.
    """
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(text.strip().lower())
        if not text.strip() or match is None or not any(match.groups()):
            raise ConfigError(f"--budget {text!r}: expected a duration such as 90s, 10m, 1h or 1h30m")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * hours + 60 * minutes + secs
    if not seconds > 0:
        raise ConfigError(f"--budget must be positive, got {text!r}")
    return seconds


@dataclass
class BudgetPlan:
    """Epoch planning for a budget of `budget_s` seconds counted from `started` (time.time()).

    An epoch's time is its training share (which a partial last epoch cuts) plus a fixed part that it cannot
    (validation, checkpoint); both are measured, as pairs (epoch seconds, training seconds).
    """

    budget_s: float
    started: float
    estimate: tuple[float, float] = (0.0, 0.0)
    epoch_times: list[tuple[float, float]] = field(default_factory=list)

    def epochs_for(self, epochs_done: int, epoch_s: float, train_s: float) -> float:
        """Total epochs (a whole number, or one ending in a fraction of an epoch) that end at the budget, given
        `epochs_done` done and, from here on, `epoch_s` seconds an epoch of which `train_s` train; at least one
        epoch in all."""
        remaining = self.budget_s * (1 - TAIL_SHARE) - (time.time() - self.started)
        fixed, train_s = max(epoch_s - train_s, 0.0), max(train_s, 1e-9)
        more = max(remaining / max(epoch_s, 1e-9), 0.0)
        for _ in range(3):  # each epoch begun, the partial last one too, pays the fixed part in full
            more = max((remaining - math.ceil(more) * fixed) / train_s, 0.0)
        # Near-whole counts stay whole: a sliver of an epoch is not worth its validation pass.
        more = round(more) if abs(more - round(more)) < 0.05 else round(more, 2)
        return max(epochs_done + more, 1)

    def record(self, epochs_done: int, epoch_s: float, train_s: float, planned: float) -> float:
        """Note that an epoch took `epoch_s` seconds, `train_s` of them training; the total epochs planned from
        the median times.

        The first epoch also pays one-off costs (decoding the validation set into its cache, starting
        TensorBoard), so alone it counts no more than the estimate made before training. Once `planned`
        epochs are done the plan stays: the schedule has ended and is never restarted.
        """
        self.epoch_times.append((epoch_s, train_s))
        if epochs_done >= planned:
            return planned
        first = [(min(epoch_s, self.estimate[0] or epoch_s), min(train_s, self.estimate[1] or train_s))]
        steady = self.epoch_times[1:] or first
        return self.epochs_for(epochs_done, statistics.median(t for t, _ in steady),
                               statistics.median(t for _, t in steady))

    def check_first_epoch(self, epoch_s: float, train_s: float) -> None:
        """`ConfigError` before training when one epoch (estimated `epoch_s` seconds, `train_s` of them
        training) exceeds the budget."""
        self.estimate = (epoch_s, train_s)
        left = self.budget_s - (time.time() - self.started)
        if epoch_s > left:
            raise ConfigError(f"--budget {self.budget_s:g}s is too short for one epoch: about {epoch_s:.0f}s are "
                              f"needed ({left:.0f}s are left after setting up); give a longer --budget or fewer "
                              "images")


def fit_schedule(recipe, epochs: float) -> None:
    """Make `recipe` (a Recipe) last `epochs` epochs, its warmup at most MAX_WARMUP_SHARE of them."""
    recipe.epochs = epochs
    recipe.warmup_epochs = min(recipe.warmup_epochs, MAX_WARMUP_SHARE * epochs)


def batches_in_epoch(epoch: int, epochs: float, batches_per_epoch: int) -> int:
    """Batches epoch `epoch` (counted from 0) runs when the run lasts `epochs` epochs: all of them, or the
    planned share of them (the nearest whole number, at least one) in a last epoch that ends in a fraction."""
    share = epochs - epoch
    return batches_per_epoch if share >= 1 else max(1, round(share * batches_per_epoch))


def estimate_epoch_s(model: nn.Module, forward_loss, data, batch: int, batches_per_epoch: int, img_size: int,
                     workers: int, device: torch.device) -> tuple[float, float]:
    """(seconds one epoch should take, of which training): `batches_per_epoch` training steps of `batch` images
    plus a pass over `data.val`, from a measured forward-backward on a copy of `model` and a few decoded
    training samples."""
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    targets = torch.arange(batch, device=device) % 2
    step_s = measure_step_s(model, forward_loss, images, targets)
    data_s = batch * measure_sample_s(data.train)
    # Loader workers decode while the model computes; in the main process decoding adds to each step.
    train_step_s = max(step_s, data_s / workers) if workers else step_s + data_s
    val_images = len(data.val) if data.val is not None else 0
    # An evaluation batch is a forward pass, about a third of a training step; its images are decoded too.
    val_s = val_images / batch * (step_s / 3 + data_s)
    return batches_per_epoch * train_step_s + val_s, batches_per_epoch * train_step_s


def measure_sample_s(dataset, samples: int = 8) -> float:
    """Median seconds to load and transform one item of `dataset` (its random draws kept out of the run's)."""
    times = []
    with torch.random.fork_rng(devices=[]):
        for index in range(min(samples, len(dataset))):
            start = time.perf_counter()
            dataset[index]
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] if times else 0.0


def measure_step_s(model: nn.Module, forward_loss, images: torch.Tensor, targets: torch.Tensor,
                   repeats: int = 2) -> float:
    """Median seconds of forward + backward of `forward_loss(model, images, targets)` on a copy of `model`
    (so its weights and BN statistics stay untouched); the first pass warms up and is not counted."""
    trial = copy.deepcopy(model)
    trial.train()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        forward_loss(trial, images, targets).backward()
        times.append(time.perf_counter() - start)
    del trial
    return sorted(times[1:])[len(times[1:]) // 2]
