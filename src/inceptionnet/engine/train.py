"""The training loop: data, model, optimizer, schedule, EMA, mixed precision, checkpoints and exact resume.

`fit(options, recipe)` trains one run into `options.out` and returns its report. The run folder gets
`config.json`, `metrics.csv`, TensorBoard events, `curves.png`, `report.json`, `log.txt` (through
`RunLogger`) and the checkpoints `last.pt` (at the end, on each new best, at least every
`checkpoint_every_s` seconds, and every `save_every_steps` optimizer steps) and `best.pt` (best validation
top-1). How often it validates is `Cadence`'s choice (cadence.py). A checkpoint holds everything needed
to continue bit for bit: model, optimizer, scheduler, scaler, EMA, the position in the epoch, RNG states and the config.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.loaders import seed_everything
from ..errors import ConfigError, DataError, InceptionNetError, WeightsError
from ..fast import optimize
from ..fileio import atomic_copy
from ..models import Preprocess, create_model, get_spec
from ..recipes import AUTO_RECIPE, Recipe
from ..recipes_auto import fit_regularisation
from ..runtime import channels_last_default, training_precision
from . import distributed as dist
from .balance import class_counts, class_weights
from .budget import BudgetPlan, estimate_epoch_s, fit_schedule
from .cadence import CHECKPOINT_EVERY_S, Cadence
from .checkpoint import load_checkpoint, save_checkpoint
from .ema import build_ema
from .losses import AuxLoss
from .mixing import build_mixer
from .optim import build_optimizer, build_scheduler
from .reproducibility import (
    EpochTaggedSampler,
    SeededSamples,
    mix_seed,
    restore_rng_state,
    rng_state,
    set_deterministic,
)
from .runlog import RunLogger

# Validation images kept in memory after their first pass when they take at most this much (as float32).
EVAL_CACHE_BYTES = 512 * 2**20


class TrainingError(InceptionNetError):
    """Training cannot go on (for example the loss stayed non-finite for too many steps in a row)."""


@dataclass
class TrainOptions:
    """Options of a run that are not hyper-parameters (those are the `Recipe`).

    `data` None trains on the embedded synthetic set. `out` None gives runs/<model>-<timestamp>.
    `save_every_steps` > 0 also writes last.pt every that many optimizer steps (for mid-epoch resume).
    `val_every` N validates every N epochs (0: as often as keeps validation within 3 % of the training
    time; the last epoch always); `checkpoint_every_s` bounds the training time a crash can lose.
    `weights`/`weights_source` start from saved weights (see `inceptionnet.load_weights`).
    Under torchrun: `sync_bn` uses SyncBatchNorm (CUDA), `dist_timeout_s` bounds how long a collective waits
    for a rank that died or hangs before the job fails. `patience` > 0 stops after that many epochs without a
    better validation top-1 (best.pt keeps the best). `budget_s` > 0 sets the epochs so the run ends within
    that many seconds (see budget.py). `recipe_note` says why the `auto` recipe chose what it did.
    """

    model: str = "googlenet_bn"
    recipe: str | None = None
    data: str | None = None
    val_split: float = 0.2
    workers: int = 0
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    strict: bool = False
    quiet: bool = False
    out: str | None = None
    weights: str | None = None
    weights_source: str = "inceptionnet"
    save_every_steps: int = 0
    val_every: int = 0
    checkpoint_every_s: float = CHECKPOINT_EVERY_S
    scale_lr: bool = True
    reference_batch: int | None = None
    sync_bn: bool = False
    dist_timeout_s: float = dist.DEFAULT_TIMEOUT_S
    patience: int = 0
    budget_s: float = 0.0
    recipe_note: str | None = None

    def validate(self) -> TrainOptions:
        """Raise `ConfigError` for an option that cannot work; return self."""
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.workers < 0:
            raise ConfigError(f"--workers must not be negative, got {self.workers}")
        if self.val_every < 0:
            raise ConfigError(f"val_every must not be negative, got {self.val_every}")
        if self.checkpoint_every_s < 0:
            raise ConfigError(f"checkpoint_every_s must not be negative, got {self.checkpoint_every_s}")
        if self.save_every_steps < 0:
            raise ConfigError(f"--save-every-steps must not be negative, got {self.save_every_steps}")
        if self.seed < 0:
            raise ConfigError(f"--seed must not be negative, got {self.seed}")
        if not self.dist_timeout_s > 0:
            raise ConfigError(f"dist_timeout_s must be positive, got {self.dist_timeout_s}")
        if self.patience < 0:
            raise ConfigError(f"--patience must not be negative, got {self.patience}")
        if self.budget_s < 0:
            raise ConfigError(f"--budget must be positive, got {self.budget_s}s")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class EpochStats:
    """Running sums of the current training epoch (kept in step checkpoints so resumed metrics match)."""

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    data_time: float = 0.0
    compute_time: float = 0.0
    images: float = 0.0


def fit(options: TrainOptions, recipe: Recipe, resume: dict | None = None) -> dict[str, Any]:
    """Train `options.model` with `recipe` (continuing the checkpoint dict `resume` if given); return the
    report written to report.json."""
    return Trainer(options.validate(), recipe.validate(), resume).run()


class Trainer:
    """One training run. Build it, then `run()`; the methods below are its stages, in order."""

    def __init__(self, options: TrainOptions, recipe: Recipe, resume: dict | None = None) -> None:
        self.options = options
        self.recipe = recipe
        self.resume = resume
        self.ctx, self.device = dist.init_distributed(options.device, options.dist_timeout_s)
        set_deterministic(options.deterministic)
        seed_everything(dist.rank_seed(options.seed, self.ctx.rank))
        self.spec = get_spec(options.model)
        self.img_size = recipe.img_size or self.spec.default_input_size
        if self.img_size < self.spec.min_input_size:
            raise ConfigError(f"--img-size {self.img_size} is below {options.model}'s minimum input size "
                              f"{self.spec.min_input_size}")
        self.aux_logits = bool(self.spec.aux_heads) and (
            self.spec.aux_default if recipe.aux_logits is None else recipe.aux_logits)
        self.aux_weight = self.spec.aux_weight if recipe.aux_weight is None else recipe.aux_weight
        self.preprocess = dataclasses.replace(self.start_preprocess(), input_size=self.img_size)
        self.precision = training_precision(recipe.precision, self.device)
        self.scaler = self.precision.grad_scaler()
        self.channels_last = channels_last_default(self.device) if recipe.channels_last is None \
            else recipe.channels_last
        # A default run folder carries a timestamp: every rank must use rank 0's.
        options.out = dist.broadcast_object(options.out)
        self.run_dir = Path(options.out)
        if resume is None and (self.run_dir / "last.pt").exists():
            raise ConfigError(f"--out {self.run_dir} already holds a run (last.pt): continue it with --resume "
                              f"{self.run_dir}, or choose another --out")
        resume_epoch = resume["epoch"] if resume else None
        self.log = RunLogger(self.run_dir, is_main=self.ctx.is_main, quiet=options.quiet, resume_epoch=resume_epoch)
        self.skipped: dict[str, str] = {}
        self.nonfinite_total = 0
        self.nonfinite_in_row = 0
        self.grads_pending = False
        self.best_top1 = -1.0
        self.best_epoch = 0
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.stats = EpochStats()
        # Early stopping counts epochs without a better validation: it needs one every epoch.
        val_every = options.val_every or (1 if options.patience else 0)
        self.cadence = Cadence(val_every, options.checkpoint_every_s)
        self.steps_seconds = 0.0  # time inside the training steps (loading included), for the report
        self.budget: BudgetPlan | None = None
        self.val_recall: list[float] = []

    # ---- setup ------------------------------------------------------------------------------------------
    def start_preprocess(self) -> Preprocess:
        """The model's preprocessing, or that of the published weights it starts from (their mean/std,
        range and channel order are what the weights expect)."""
        from ..weights import get_weights, is_weights_tag

        if self.options.weights and is_weights_tag(self.options.weights):
            return get_weights(self.options.weights).preprocess
        return self.spec.preprocess

    def build_data(self) -> None:
        """Datasets, transforms and loaders; the train order is resumable (see reproducibility.py)."""
        from ..data.datasets import build_datasets
        from ..data.loaders import build_loader
        from ..data.memory import batched_augment, in_memory_datasets, in_memory_loaders
        from ..data.transforms import build_eval_transform

        r = self.recipe
        # Small images whose augmentation runs batched are decoded once and augmented on the device.
        augment = batched_augment(r)
        in_memory = None if augment is None else in_memory_datasets(
            self.options.data, self.options.val_split, self.options.seed, self.img_size, self.preprocess,
            self.options.strict)
        # The synthetic set may need generating: rank 0 first, then the others read it. Real folders are
        # scanned by all ranks at once (a long scan must not wait out the collective timeout).
        generate_first = self.options.data is None
        if generate_first and not self.ctx.is_main:
            dist.barrier()
        self.data = in_memory or build_datasets(
            self.options.data, self.options.val_split, self.options.seed, self.train_transform(),
            build_eval_transform(self.preprocess, self.img_size), strict=self.options.strict)
        if generate_first and self.ctx.is_main:
            dist.barrier()
        self.class_names = list(self.data.class_names)
        if self.options.strict and self.data.skipped:
            path, reason = self.data.skipped[0]
            raise DataError(f"--strict: cannot use {path}: {reason}")
        self.note_skipped(self.data.skipped)
        for note in self.data.notes:
            self.log.warn(note)
        self.class_weights, self.balance_note = class_weights(class_counts(self.data.train, len(self.class_names)),
                                                              r.balance)
        plan = dist.plan_batch_and_lr(r.batch_size, self.ctx.world_size, r.lr, self.options.reference_batch,
                                      self.options.scale_lr)
        self.batch_plan = plan
        if len(self.data.train) < plan.global_batch:
            raise ConfigError(f"the training set has {len(self.data.train)} images, fewer than one batch of "
                              f"{plan.global_batch}; lower --batch-size")
        self.sampler = EpochTaggedSampler(dist.TrainSampler(self.data.train, seed=self.options.seed))
        self.eval_cache: dict[str, list] = {}
        if in_memory is not None:
            self.train_loader, self.eval_loaders = in_memory_loaders(
                in_memory, plan.per_rank_batch, self.sampler.sampler, dist.EvalSampler, self.preprocess, self.device,
                self.options.seed, self.ctx.rank, augment)
            self.count_batches(plan)
            return
        # Full batches only: a BatchNorm layer cannot train on a last batch of one image.
        self.train_loader = build_loader(SeededSamples(self.data.train, self.options.seed), plan.per_rank_batch,
                                         shuffle=False, workers=self.options.workers, seed=self.options.seed,
                                         drop_last=True, sampler=self.sampler)
        self.eval_loaders = {}
        for split in ("val", "test"):
            dataset = getattr(self.data, split)
            if dataset is not None and len(dataset) > 0:
                self.eval_loaders[split] = build_loader(dataset, plan.per_rank_batch, shuffle=False,
                                                        workers=self.options.workers, seed=self.options.seed,
                                                        sampler=dist.EvalSampler(dataset))
        self.count_batches(plan)

    def count_batches(self, plan: dist.BatchPlan) -> None:
        """Batches and optimizer steps per epoch of this rank."""
        r = self.recipe
        self.batches_per_epoch = len(self.sampler.sampler) // plan.per_rank_batch
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / r.accum_steps)

    def train_transform(self):
        """The training transform the recipe asks for (TrainAugment settings)."""
        from ..data.transforms import TrainAugment, build_train_transform

        r = self.recipe
        aug = TrainAugment(scale=(r.scale_min, r.scale_max), ratio=(r.ratio_min, r.ratio_max), hflip=r.hflip,
                           photometric=r.photometric, random_interpolation=r.random_interpolation,
                           pad_crop=r.pad_crop, resize_only=r.resize_only, auto_augment=r.auto_augment,
                           random_erasing=r.random_erasing)
        return build_train_transform(aug, self.preprocess, self.img_size)

    def build_model(self) -> None:
        """The network (from `weights` when given, with a new head if the recipe asks), the optimizer,
        schedule, EMA, loss and DDP wrapper."""
        r = self.recipe
        self.model_kwargs = {"num_classes": len(self.class_names), "aux_logits": self.aux_logits, "in_chans": 3,
                             **self.weights_model_kwargs()}
        model = create_model(self.options.model, **self.model_kwargs)
        if self.options.weights and not self.resume:
            self.load_start_weights(model)
        elif r.new_head and not self.resume:
            self.log.warn(f"recipe {r.name} expects pretrained weights (--weights FILE); without them "
                          f"{self.options.model} trains from a random initialisation")
        if self.bn_frozen:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.requires_grad_(False)
        # The training fast path: the model's own modules (BN keeps learning), channels_last when the recipe asks.
        model = optimize(model.to(self.device), mode="train", channels_last=self.channels_last)
        self.model = model
        self.optimizer = build_optimizer(model, dataclasses.replace(r, lr=self.batch_plan.lr))
        self.scheduler = build_scheduler(self.optimizer, r, self.steps_per_epoch)
        self.ema = build_ema(model, r.ema_decay, r.ema_warmup) if r.ema_decay > 0 else None
        self.criterion = AuxLoss(self.aux_weight if self.aux_logits else 0.0, r.label_smoothing,
                                 self.class_weights).to(self.device)
        self.mixer = build_mixer(r, len(self.class_names))
        self.train_model = dist.wrap_ddp(model, self.device, sync_bn=self.options.sync_bn)

    def load_start_weights(self, model: nn.Module) -> None:
        """Load `options.weights`; with `new_head` the classifier layers may differ and are re-initialised."""
        from ..weights import get_weights, is_weights_tag, load_state_dict, load_weights, pretrained_state_dict

        new_head = self.recipe.new_head
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if is_weights_tag(self.options.weights):  # published weights: fetched, converted, input folded
                state = pretrained_state_dict(model, get_weights(self.options.weights), progress=not self.options.quiet)
                report = load_state_dict(model, state, strict=not new_head, origin=self.options.weights)
            else:
                report = load_weights(model, self.options.weights, source=self.options.weights_source,
                                      strict=not new_head)
        head_prefixes = tuple(name + "." for name in model.classifier_names)
        other = [k.split(" ")[0] for k in report.missing + report.unexpected + report.mismatched]
        other = [k for k in other if not k.startswith(head_prefixes)]
        if other:
            raise WeightsError(f"{self.options.weights} does not fit {self.options.model} beyond its classifier: "
                               f"{report.describe()}")
        if new_head:
            model.reset_classifier(len(self.class_names))
        for warning in caught:
            if "partial load" not in str(warning.message):
                self.log.warn(str(warning.message))
        self.log.log(f"weights: {self.options.weights} ({self.options.weights_source})"
                     + (", new classifier head" if new_head else ""))

    @property
    def bn_frozen(self) -> bool:
        """BN in eval mode with frozen parameters: the recipe's `freeze_bn`, or a run from weights whose
        per-device batch is below `freeze_bn_below_batch`."""
        r = self.recipe
        small = bool(self.options.weights) and self.batch_plan.per_rank_batch < r.freeze_bn_below_batch
        return r.freeze_bn or small

    def weights_model_kwargs(self) -> dict[str, Any]:
        """Constructor options the start weights need (a published file with a folded input transform)."""
        from ..weights import get_weights, is_weights_tag

        weights = self.options.weights
        return dict(get_weights(weights).model_kwargs) if weights and is_weights_tag(weights) else {}

    # ---- checkpoints ------------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """Everything to continue this run exactly, or to use its model (plain types and tensors)."""
        return {
            "model_name": self.options.model,
            "model_kwargs": self.model_kwargs,
            "class_names": self.class_names,
            "preprocess": self.preprocess.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
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
            "rng": rng_state(),
            "config": self.config(),
        }

    def save_last(self) -> None:
        """Write last.pt (rank 0 only); `epoch`/`batch_in_epoch` say where the run continues. Every rank
        sends its RNG state and running epoch sums, so a resumed DDP run continues each rank exactly."""
        per_rank = dist.all_gather_objects({"rng": rng_state(), "epoch_stats": dataclasses.asdict(self.stats)})
        if self.ctx.is_main:
            save_checkpoint(self.run_dir / "last.pt", {**self.checkpoint_state(), "per_rank": per_rank})

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Put the run back to the state of checkpoint `ckpt` (called after the data loader exists)."""
        if ckpt["class_names"] != self.class_names:
            raise ConfigError(f"cannot resume {self.run_dir}: the data's classes differ from the checkpoint's")
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
        self.restore_rank_state(ckpt)
        self.log.log(f"resumed from {ckpt['path']}: epoch {self.epoch + 1}, batch {self.batch_in_epoch}, "
                     f"step {self.step}")

    def restore_rank_state(self, ckpt: dict[str, Any]) -> None:
        """Each rank takes back its own RNG state and epoch sums. With a different number of processes than
        when saved, rank 0 takes all the sums (so the all-reduced epoch metrics stay right) and the random
        streams are re-seeded from (seed, step); the data order still continues exactly."""
        saved = ckpt.get("per_rank") or [{"rng": ckpt["rng"], "epoch_stats": ckpt["epoch_stats"]}]
        if len(saved) == self.ctx.world_size:
            self.stats = EpochStats(**saved[self.ctx.rank]["epoch_stats"])
            restore_rng_state(saved[self.ctx.rank]["rng"])
            return
        totals = {key: sum(s["epoch_stats"][key] for s in saved) for key in saved[0]["epoch_stats"]}
        self.stats = EpochStats(**totals) if self.ctx.is_main else EpochStats()
        seed_everything(dist.rank_seed(mix_seed(self.options.seed, self.step), self.ctx.rank))
        self.log.log(f"resuming with {self.ctx.world_size} processes instead of {len(saved)}: random streams "
                     "re-seeded")

    def config(self) -> dict[str, Any]:
        return {"options": self.options.to_dict(), "recipe": self.recipe.to_dict(), "model": self.options.model,
                "img_size": self.img_size, "aux_logits": self.aux_logits, "aux_weight": self.aux_weight,
                "world_size": self.ctx.world_size, "global_batch": self.batch_plan.global_batch,
                "lr": self.batch_plan.lr, "precision": self.precision.name, "channels_last": self.channels_last,
                "device": str(self.device)}

    # ---- the loop ---------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train every remaining epoch, validating and checkpointing after each; return the report."""
        try:
            return self._run()
        except RuntimeError as e:
            raise _worker_error(e) from None
        finally:
            self.log.close()
            dist.cleanup_distributed()

    def _run(self) -> dict[str, Any]:
        started = time.time()
        self.build_data()
        self.build_model()
        if self.resume:
            self.restore(self.resume)
        else:
            self.log.log(f"run folder: {self.run_dir}")
        if self.options.budget_s and not self.resume:
            self.plan_budget(started)
        self.log.save_config(self.config())
        self.describe()
        while self.epoch < self.recipe.epochs and not self.out_of_patience():
            epoch_started = time.time()
            metrics = self.train_epoch()
            if self.validation_due():
                metrics.update(self.validate())
            self.finish_epoch(metrics)
            self.replan_budget(time.time() - epoch_started)
        report = self.final_report(time.time() - started)
        return report

    def plan_budget(self, started: float) -> None:
        """Set the epochs from a step time measured on a copy of the model before training; ConfigError when
        the budget cannot hold one epoch."""
        self.budget = BudgetPlan(self.options.budget_s, started)
        epoch_s = estimate_epoch_s(self.model, self.budget_loss, self.data, self.batch_plan.per_rank_batch,
                                   self.batches_per_epoch, self.img_size, self.options.workers, self.device)
        self.budget.check_first_epoch(epoch_s)
        fit_schedule(self.recipe, self.budget.epochs_for(0, epoch_s))
        if self.recipe.name == AUTO_RECIPE and fit_regularisation(self.recipe):
            # Fewer epochs than the auto plan assumed: lighter augmentation and mixing (before any is drawn).
            self.data.train.transform = self.train_transform()
            self.mixer = build_mixer(self.recipe, len(self.class_names))
            r = self.recipe
            self.log.log(f"budget: a short run, lighter regularisation: mix_prob {r.mix_prob:.2f}, random_erasing "
                         f"{r.random_erasing:.2f}, auto_augment {r.auto_augment}")
        self.log.log(f"budget {self.options.budget_s:g}s: about {epoch_s:.1f}s an epoch (measured before "
                     f"training) -> {self.recipe.epochs} epochs; set again after each epoch from measured times")

    def training_loss(self, model: nn.Module, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(loss with the aux heads' terms, main-head loss, logits) of `model` on one (N, C, H, W) batch under the
        run's precision; `targets` are (N,) labels or (N, classes) soft targets. The training step and the
        budget's step timing both use it."""
        with self.precision.autocast():
            logits, aux = model(images, with_aux=True) if self.aux_logits else (model(images), ())
            loss, main = self.criterion(logits.float(), [a.float() for a in aux], targets)
        return loss, main, logits

    def budget_loss(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        """The training loss of `model` on one batch (for the budget's step timing)."""
        return self.training_loss(model, images, targets)[0]

    def replan_budget(self, epoch_s: float) -> None:
        """After each epoch, set the epochs again from the measured epoch times (`epoch_s`: the wall time of the
        epoch just done, training, validation and checkpoint); the cosine follows the new end."""
        if self.budget is None:
            return
        epochs = dist.broadcast_object(self.budget.record(self.epoch, epoch_s, self.recipe.epochs))
        if epochs != self.recipe.epochs:
            self.log.log(f"budget: {epoch_s:.1f}s an epoch measured -> {epochs} epochs")
            fit_schedule(self.recipe, epochs)
            self.log.save_config(self.config())

    def out_of_patience(self) -> bool:
        """True (said once in the log) when `patience` epochs passed without a better validation top-1."""
        waited = self.epoch - self.best_epoch
        if not self.options.patience or self.best_epoch == 0 or waited < self.options.patience:
            return False
        self.log.log(f"early stop after epoch {self.epoch}: no better val top-1 for {waited} epochs; best.pt keeps "
                     f"epoch {self.best_epoch}")
        return True

    def describe(self) -> None:
        aux = f"aux heads x{self.aux_weight}" if self.aux_logits else "no aux heads"
        self.log.log(f"model {self.options.model} ({aux}), {self.img_size}px, recipe {self.recipe.name}, "
                     f"{self.precision.describe()}{', channels_last' if self.channels_last else ''}, "
                     f"{self.ctx.describe(self.device)}")
        if self.options.recipe_note:
            self.log.log(self.options.recipe_note)
        self.log.log(self.balance_note)
        self.log.log(f"data: {self.data.source}: {len(self.data.train)} train / "
                     + " / ".join(f"{len(getattr(self.data, s))} {s}" for s in self.eval_loaders)
                     + f" images, {len(self.class_names)} classes; {self.batch_plan.note}")
        if self.bn_frozen:
            self.log.log(f"BatchNorm frozen (eval-mode statistics): {self.batch_plan.per_rank_batch} images per "
                         "device" + ("" if self.recipe.freeze_bn else
                                     f" < freeze_bn_below_batch {self.recipe.freeze_bn_below_batch}"))
        if self.recipe.head_only_epochs:
            self.log.log(f"fine-tuning: the classifier head alone for {self.recipe.head_only_epochs:g} epoch(s), "
                         f"then the whole network (body lr x{self.recipe.body_lr_scale:g})")

    def set_train_mode(self) -> None:
        self.train_model.train()
        if self.bn_frozen:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_epoch(self) -> dict[str, float]:
        """One epoch (or its remainder after a resume); returns the epoch's training metrics."""
        r = self.recipe
        self.set_train_mode()
        if self.batch_in_epoch == 0:
            self.stats = EpochStats()
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch * self.batch_plan.per_rank_batch)
        # The loader counts its passes from 0 and announces that count as the epoch: after a resume it must
        # start from the checkpoint's epoch instead.
        self.train_loader.set_epoch(self.epoch)
        with torch.random.fork_rng(devices=[]):
            # Starting a DataLoader iterator draws a worker seed from the torch generator; keep that draw out
            # of the training stream so a resumed run continues the same stream from its saved state.
            batches = iter(self.train_loader)
        bar = self.log.progress(range(self.batch_in_epoch, self.batches_per_epoch),
                                desc=f"epoch {self.epoch + 1}/{r.epochs}")
        tick = time.perf_counter()
        for index in bar:
            batch = next(batches)
            loaded = time.perf_counter()
            self.note_skipped(batch.skipped)
            self.train_batch(batch.images, batch.targets, index)
            # A window whose every batch was skipped (non-finite or unreadable) makes no update.
            stepped = self.ends_accumulation(self.batch_in_epoch) and self.grads_pending
            if stepped:
                self.optimizer_step()
            done = time.perf_counter()
            self.stats.data_time += loaded - tick
            self.stats.compute_time += done - loaded
            if stepped:
                bar.set_postfix(loss=f"{self.stats.loss_sum / max(self.stats.count, 1):.3f}",
                                data=f"{loaded - tick:.3f}s", compute=f"{done - loaded:.3f}s")
                if (self.options.save_every_steps and self.step % self.options.save_every_steps == 0
                        and self.batch_in_epoch < self.batches_per_epoch):
                    self.save_last()
            tick = time.perf_counter()
        bar.close()
        sums = dist.all_reduce_sum([self.stats.loss_sum, self.stats.correct, self.stats.count]).tolist()
        return {"train_loss": sums[0] / max(sums[2], 1), "train_acc": sums[1] / max(sums[2], 1),
                "lr": self.optimizer.param_groups[0]["lr"], "data_time": self.stats.data_time,
                "compute_time": self.stats.compute_time}

    def ends_accumulation(self, batch_number: int) -> bool:
        """True when batch `batch_number` (counted from 1 in the epoch) is followed by an optimizer step."""
        return batch_number % self.recipe.accum_steps == 0 or batch_number == self.batches_per_epoch

    def train_batch(self, images: Tensor, targets: Tensor, index: int) -> None:
        """Forward and backward of one micro-batch; DDP all-reduces the gradients only on the last
        micro-batch before an optimizer step."""
        with dist.grad_sync(self.train_model, sync=self.ends_accumulation(index + 1)):
            self.forward_backward(images, targets, index)

    def forward_backward(self, images: Tensor, targets: Tensor, index: int) -> None:
        """Forward and backward of one micro-batch; a non-finite loss is skipped and counted."""
        self.batch_in_epoch = index + 1
        if not self.everywhere(targets.numel() > 0):  # every file of a rank's batch was unreadable (and skipped)
            return
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # Mixed batches train on soft targets; accuracy is still counted against each image's own label.
        images, soft_targets = self.mixer(images, targets) if self.mixer is not None else (images, targets)
        loss, main, logits = self.training_loss(self.train_model, images, soft_targets)
        if not self.everywhere(bool(torch.isfinite(loss))):
            self.nonfinite_total += 1
            self.nonfinite_in_row += 1
            self.log.warn(f"non-finite loss at epoch {self.epoch + 1} batch {index + 1}: skipped "
                          f"({self.nonfinite_in_row} in a row)")
            if self.nonfinite_in_row >= self.recipe.max_nonfinite:
                raise TrainingError(f"the loss was non-finite for {self.nonfinite_in_row} batches in a row; "
                                    "lower --lr, try --precision fp32 or check the data")
            return
        self.nonfinite_in_row = 0
        scaled = loss / self.recipe.accum_steps
        if self.scaler is not None:
            scaled = self.scaler.scale(scaled)
        scaled.backward()
        self.grads_pending = True
        n = targets.numel()
        self.stats.loss_sum += float(main.detach()) * n
        self.stats.correct += float((logits.detach().argmax(1) == targets).sum())
        self.stats.count += n
        self.stats.images += n

    def everywhere(self, ok: bool) -> bool:
        """Whether `ok` holds on every rank. Under DDP all ranks must skip a batch together (empty or with a
        non-finite loss on any rank): the ranks that ran backward would otherwise wait for the gradients of
        one that skipped, and their collectives would no longer pair up."""
        if self.ctx.distributed:
            return bool(dist.all_reduce_sum([float(not ok)])[0] == 0)
        return ok

    def optimizer_step(self) -> None:
        """Clip, step, update the scaler, schedule and EMA, then clear the gradients."""
        scaler = self.scaler
        if self.recipe.grad_clip > 0:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.grads_pending = False
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1

    def eval_batches(self, split: str) -> Iterable:
        """The batches of evaluation split `split`. The evaluation transform is deterministic, so a split
        whose images fit in EVAL_CACHE_BYTES is decoded once and its batches kept for the later epochs."""
        if split in self.eval_cache:
            return self.eval_cache[split]
        loader = self.eval_loaders[split]
        if len(loader.dataset) * 3 * self.img_size**2 * 4 > EVAL_CACHE_BYTES:
            return loader
        self.eval_cache[split] = list(loader)
        return self.eval_cache[split]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable) -> dict[str, Any]:
        """Top-1, top-5, cross-entropy, image count, balanced accuracy (`bacc`, the mean per-class recall) and
        per-class `recall` (a list) of `model` over `loader`, summed over every rank."""
        model.eval()
        num_classes = len(self.class_names)
        k = min(5, num_classes)
        sums = torch.zeros(4 + 2 * num_classes, dtype=torch.float64)
        for batch in loader:
            self.note_skipped(batch.skipped)
            images = batch.images.to(self.device, non_blocking=True)
            targets = batch.targets.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast():
                logits = model(images).float()
            top = logits.topk(k, dim=1).indices
            hits = top[:, 0] == targets
            sums += torch.cat([
                torch.tensor([float(hits.sum()), float((top == targets[:, None]).any(1).sum()),
                              float(nn.functional.cross_entropy(logits, targets, reduction="sum")), targets.numel()],
                             dtype=torch.float64),
                torch.bincount(targets[hits].cpu(), minlength=num_classes).double(),
                torch.bincount(targets.cpu(), minlength=num_classes).double()])
        sums = torch.tensor(dist.all_reduce_sum(sums.tolist()).tolist(), dtype=torch.float64)
        n = max(float(sums[3]), 1)
        present = sums[4 + num_classes:] > 0
        recall = (sums[4:4 + num_classes] / sums[4 + num_classes:].clamp(min=1)).tolist()
        bacc = float(sum(r for r, p in zip(recall, present.tolist(), strict=True) if p) / max(int(present.sum()), 1))
        return {"acc": float(sums[0]) / n, f"top{k}": float(sums[1]) / n, "loss": float(sums[2]) / n,
                "images": int(sums[3]), "bacc": bacc, "recall": recall}

    def eval_model(self) -> nn.Module:
        """The network that is evaluated and kept as best: the weight average when the recipe has one."""
        return self.ema.module if self.ema is not None else self.model

    def validation_due(self) -> bool:
        """Whether the epoch just trained ends with validation (rank 0 decides: the ranks validate together)."""
        return bool(dist.broadcast_object(self.cadence.validate_now(self.epoch + 1, self.recipe.epochs)))

    def validate(self) -> dict[str, float]:
        """Validation metrics (`val_acc`, `val_loss`, ...) of the evaluated model; tells the cadence its cost."""
        if "val" not in self.eval_loaders:
            return {}
        started = time.perf_counter()
        metrics = self.evaluate(self.eval_model(), self.eval_batches("val"))
        self.val_recall = metrics.pop("recall")
        train_seconds = self.stats.data_time + self.stats.compute_time
        self.cadence.validated(self.epoch + 1, time.perf_counter() - started, train_seconds)
        self.cadence.interval = dist.broadcast_object(self.cadence.interval)
        return {f"val_{k}": v for k, v in metrics.items()}

    def finish_epoch(self, metrics: dict[str, float]) -> None:
        """Close the epoch: checkpoint last.pt (and best.pt on a new best val top-1), log the epoch line."""
        metrics["time"] = self.stats.data_time + self.stats.compute_time
        images = dist.all_reduce_sum([self.stats.images])[0].item()  # every rank's images: the job's throughput
        metrics["images_per_s"] = images / max(metrics["time"], 1e-9)
        self.epoch += 1
        self.batch_in_epoch = 0
        improved = "val_acc" in metrics and metrics["val_acc"] > self.best_top1
        if improved:
            self.best_top1, self.best_epoch = metrics["val_acc"], self.epoch
        self.steps_seconds += metrics["time"]
        self.stats = EpochStats()
        if dist.broadcast_object(self.cadence.checkpoint_now(self.epoch >= self.recipe.epochs, improved)):
            self.save_last()
            self.cadence.saved()
        if improved and self.ctx.is_main:
            atomic_copy(self.run_dir / "last.pt", self.run_dir / "best.pt")
        self.log.log_epoch(self.epoch, self.recipe.epochs, metrics)
        self.log.scalars(self.epoch, {"nonfinite_skipped": self.nonfinite_total})

    def final_report(self, wall_time: float) -> dict[str, Any]:
        """Test-set metrics of best.pt when a test split exists; then report.json."""
        extra: dict[str, Any] = {
            "model": self.options.model, "recipe": self.recipe.name, "img_size": self.img_size,
            "device": str(self.device), "precision": self.precision.name, "world_size": self.ctx.world_size,
            "steps": self.step, "batches_per_epoch": self.batches_per_epoch, "nonfinite_skipped": self.nonfinite_total,
            "train_wall_time_s": round(wall_time, 3),
            "steps_time_s": round(self.steps_seconds, 3),
            # Everything outside the training steps: setup, validation, checkpoints, plots and logs.
            "outside_steps_fraction": round(1 - self.steps_seconds / max(wall_time, 1e-9), 4),
            "best_val_top1": self.best_top1 if self.best_top1 >= 0 else None,
            "last_checkpoint": str(self.run_dir / "last.pt"),
            "final_model": ("last.pt: the EMA of the weights at the last epoch" if self.ema is not None else
                            "last.pt: the weights at the last epoch") + "; best.pt: the epoch of best val top-1",
            "val_per_class_recall": dict(zip(self.class_names, self.val_recall, strict=False)),
            "class_weights": self.class_weights.tolist() if self.class_weights is not None else None,
            "budget_s": self.options.budget_s or None,
        }
        best = self.run_dir / "best.pt"
        dist.barrier()
        if dist.broadcast_object(best.is_file()):  # rank 0 decides: every rank must take part in the test
            extra["best_checkpoint"] = str(best)
            if "test" in self.eval_loaders:
                ckpt = load_checkpoint(best)
                self.eval_model().load_state_dict(ckpt["ema"] if ckpt["ema"] is not None else ckpt["model"])
                test = self.evaluate(self.eval_model(), self.eval_loaders["test"])
                extra["test_per_class_recall"] = dict(zip(self.class_names, test.pop("recall"), strict=True))
                extra.update({f"test_{k}": v for k, v in test.items()})
        for other in dist.all_gather_objects(self.skipped)[1:]:  # each rank saw its own share of the files
            for path, reason in other.items():
                self.skipped.setdefault(path, reason)
        report = self.log.write_report(extra, sorted(self.skipped.items()))
        summary = f"best val top-1 {100 * self.best_top1:.2f}% (epoch {self.best_epoch})" if self.best_top1 >= 0 \
            else "no validation split"
        self.log.log(f"done in {wall_time:.1f}s: {summary}; run folder {self.run_dir}")
        return report

    def note_skipped(self, items: Iterable[tuple[str, str]]) -> None:
        """Remember files the data pipeline skipped (path -> reason), for report.json."""
        for path, reason in items:
            if str(path) not in self.skipped:
                self.skipped[str(path)] = reason
                self.log.warn(f"skipped {path}: {reason}")


def default_run_dir(model: str) -> str:
    """runs/<model>-<YYYYmmdd-HHMMSS> under the current directory."""
    return str(Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}")


def _worker_error(error: RuntimeError) -> Exception:
    """A DataLoader worker re-raises our errors as a RuntimeError holding the worker's traceback: turn
    that back into a one-line DataError; any other RuntimeError is returned unchanged."""
    text = str(error)
    first = text.split("\n", 1)[0]
    if not first.startswith("Caught ") or not any(name in first for name in ("BadImageError", "DataError")):
        return error
    last = text.rstrip().rsplit("\n", 1)[-1]
    return DataError(last.split(": ", 1)[-1])
