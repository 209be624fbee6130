"""How often a run validates and writes last.pt.

Often enough to keep the best model and lose little on a crash; rarely enough that neither costs more
than a few percent of the run. On a small folder with a large validation split (245 train / 153 val
images), validating every epoch alone took over a fifth of the training time: a validation pass is a
forward pass over the whole split, against forward and backward over the training images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .runlog import LAST_EPOCHS_MEAN

# `auto` validates so that validation stays within this share of the training time...
VAL_SHARE = 0.02
# ...and in every one of the last epochs, whose mean the report gives as a measure of stability.
VALIDATE_LAST = LAST_EPOCHS_MEAN
# last.pt is written at least this often (and at the end).
CHECKPOINT_EVERY_S = 60.0


@dataclass
class Cadence:
    """When to validate and when to checkpoint; epochs are counted from 1 (the epoch just trained).

    `val_every` N > 0 validates every N epochs; 0 (auto) validates the first epoch, measures what the pass
    cost against the epoch's training time, and from then on validates every `interval` epochs, the
    fewest that keep validation within VAL_SHARE of the training time, and every one of the last
    VALIDATE_LAST epochs. The last epoch always validates. `checkpoint_every_s` bounds the training time a
    crash can lose (`--save-every-steps` goes finer).
    """

    val_every: int = 0
    checkpoint_every_s: float = CHECKPOINT_EVERY_S
    interval: int = 1
    last_val_epoch: int = 0
    last_save: float = field(default_factory=lambda: time.monotonic())

    def validate_now(self, epoch: int, epochs: int) -> bool:
        """Whether epoch `epoch` of `epochs` ends with a validation pass."""
        if epoch >= epochs or (not self.val_every and epoch > epochs - VALIDATE_LAST):
            return True
        return epoch - self.last_val_epoch >= (self.val_every or self.interval)

    def validated(self, epoch: int, val_seconds: float, train_seconds: float) -> None:
        """Record a validation pass after epoch `epoch` that took `val_seconds` against `train_seconds`."""
        self.last_val_epoch = epoch
        if not self.val_every:
            self.interval = max(1, math.ceil(val_seconds / (VAL_SHARE * max(train_seconds, 1e-9))))

    def checkpoint_now(self, final: bool) -> bool:
        """Whether to write last.pt now: at the end, or when the last one is old enough (a new best goes to
        best.pt, which holds the evaluated weights only)."""
        return final or time.monotonic() - self.last_save >= self.checkpoint_every_s

    def saved(self) -> None:
        self.last_save = time.monotonic()

    def state_dict(self) -> dict[str, int]:
        return {"interval": self.interval, "last_val_epoch": self.last_val_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.interval, self.last_val_epoch = state["interval"], state["last_val_epoch"]
