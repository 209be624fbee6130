"""The trainer: builds the data, the model and the `RunState` (state.py), runs `train_one_epoch` and
`evaluate` (loop.py) epoch by epoch, and owns the run folder, checkpoints and exact resume.

`fit(options, recipe)` trains one run into `options.out` and returns its report. The run folder gets
`config.json`, `metrics.csv`, TensorBoard events, `curves.png`, `report.json`, `log.txt` (through
`RunLogger`) and the checkpoints `last.pt` (at the end, at least every `checkpoint_every_s` seconds, and
every `save_every_steps` optimizer steps) and `best.pt` (the evaluated weights of the best validation
top-1, a model file without the training state). How often it validates is `Cadence`'s choice
(cadence.py). last.pt holds everything needed to continue bit for bit: model, optimizer, scheduler, scaler,
EMA, the position in the epoch, RNG states and the config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..artifacts.format import save_model
from ..data.memory import sample_model_inputs
from ..errors import ConfigError, DataError, RunStopped
from ..fast import optimize
from ..models import create_model, get_spec
from ..recipes import AUTO_RECIPE, Recipe
from ..recipes_auto import fit_regularisation
from ..runtime import channels_last_default, mix_seed, seed_everything, set_deterministic, training_precision
from . import distributed as dist
from .balance import class_counts, class_weights
from .budget import BudgetPlan, batches_in_epoch, estimate_epoch_s, fit_schedule
from .cadence import CHECKPOINT_EVERY_S, Cadence
from .checkpoint import load_checkpoint, save_checkpoint
from .ema import build_ema
from .loop import TrainStep, evaluate, train_one_epoch
from .losses import AuxLoss
from .mixing import build_mixer
from .optim import build_optimizer, build_scheduler
from .reproducibility import restore_rng_state, rng_state
from .runlog import RunLogger
from .start_weights import load_start_weights, start_model_kwargs, start_preprocess
from .state import EpochStats, RunState
from .stopping import StopRequest

# Validation images kept in memory after their first pass when they take at most this much (as float32).
EVAL_CACHE_BYTES = 512 * 2**20
# Training images a model's data-dependent initialisation sees (airbench whitens from 5,000 of CIFAR-10's).
DATA_INIT_IMAGES = 5000


@dataclass
class TrainOptions:
    """Options of a run that are not hyper-parameters (those are the `Recipe`).

    `data` None trains on the embedded synthetic set. `out` None gives runs/<model>-<timestamp>.
    `save_every_steps` > 0 also writes last.pt every that many optimizer steps (for mid-epoch resume).
    `val_every` N validates every N epochs (0: see `Cadence`: the first epoch, then as often as keeps
    validation within 2 % of the training time, and each of the last 5); `checkpoint_every_s` bounds the
    training time a crash can lose.
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


def fit(options: TrainOptions, recipe: Recipe, resume: dict | None = None) -> dict[str, Any]:
    """Train `options.model` with `recipe` (continuing the checkpoint dict `resume` if given); return the
    report written to report.json."""
    return Trainer(options.validate(), recipe.validate(), resume).run()


class Trainer:
    """One training run: builds the data, the model and the `RunState`, then `run()` trains epoch by epoch with
    `train_one_epoch`, validates on the cadence, checkpoints and writes the report."""

    def __init__(self, options: TrainOptions, recipe: Recipe, resume: dict | None = None) -> None:
        self.options = options
        self.recipe = recipe
        self.resume = resume
        self.stop = StopRequest()
        self.ctx, self.device = dist.init_distributed(options.device, options.dist_timeout_s)
        set_deterministic(options.deterministic)
        seed_everything(dist.rank_seed(options.seed, self.ctx.rank))
        self.spec = get_spec(options.model)
        self.img_size = recipe.img_size or self.spec.default_input_size
        if self.img_size < self.spec.min_input_size:
            raise ConfigError(f"--img-size {self.img_size} is below {options.model}'s minimum input size "
                              f"{self.spec.min_input_size}")
        self.aux_logits = self.spec.uses_aux(recipe.aux_logits)
        self.aux_weight = self.spec.aux_weight if recipe.aux_weight is None else recipe.aux_weight
        self.preprocess = dataclasses.replace(start_preprocess(self.spec, options.weights), input_size=self.img_size)
        self.precision = training_precision(recipe.precision, self.device)
        self.channels_last = channels_last_default(self.device) if recipe.channels_last is None \
            else recipe.channels_last
        # A default run folder carries a timestamp: every rank must use rank 0's.
        options.out = dist.broadcast_object(options.out)
        self.run_dir = Path(options.out)
        if resume is None and (self.run_dir / "last.pt").exists():
            raise ConfigError(f"--out {self.run_dir} already holds a run (last.pt): continue it with --resume "
                              f"{self.run_dir}, or choose another --out")
        self.log = RunLogger(self.run_dir, is_main=self.ctx.is_main, quiet=options.quiet,
                             resume_epoch=resume["epoch"] if resume else None)
        self.skipped: dict[str, str] = {}
        # Early stopping counts epochs without a better validation: it needs one every epoch.
        self.cadence = Cadence(options.val_every or (1 if options.patience else 0), options.checkpoint_every_s)
        self.budget: BudgetPlan | None = None
        self.val_recall: list[float] = []

    # ---- setup ------------------------------------------------------------------------------------------
    def build_data(self) -> None:
        """Datasets, the batch plan and the loaders; the training order is resumable (data/loaders.py)."""
        from ..data.datasets import build_datasets
        from ..data.memory import batched_augment, in_memory_datasets
        from ..data.transforms import build_eval_transform

        # Small images whose augmentation runs batched are decoded once and augmented on the device.
        augment = batched_augment(self.recipe)
        in_memory = None if augment is None else in_memory_datasets(
            self.options.data, self.options.val_split, self.options.seed, self.img_size, self.preprocess)
        # The synthetic set may need generating: rank 0 first, then the others read it. Real folders are
        # scanned by all ranks at once (a long scan must not wait out the collective timeout).
        generate_first = self.options.data is None
        if generate_first and not self.ctx.is_main:
            dist.barrier()
        self.data = in_memory or build_datasets(
            self.options.data, self.options.val_split, self.options.seed, self.train_transform(),
            build_eval_transform(self.preprocess, self.img_size))
        if generate_first and self.ctx.is_main:
            dist.barrier()
        self.class_names = list(self.data.class_names)
        self.note_skipped(self.data.skipped)
        for note in self.data.notes:
            self.log.warn(note)
        self.class_weights, self.balance_note = class_weights(class_counts(self.data.train, len(self.class_names)),
                                                              self.recipe.balance)
        self.batch_plan = dist.plan_batch_and_lr(self.recipe.batch_size, self.ctx.world_size, self.recipe.lr,
                                                 self.options.reference_batch, self.options.scale_lr)
        if len(self.data.train) < self.batch_plan.global_batch:
            raise ConfigError(f"the training set has {len(self.data.train)} images, fewer than one batch of "
                              f"{self.batch_plan.global_batch}; lower --batch-size")
        self.build_loaders(in_memory is not None, augment)
        self.eval_cache: dict[str, list] = {}

    def build_loaders(self, in_memory: bool, augment) -> None:
        """The training loader (full batches only: a BatchNorm layer cannot train on a last batch of one image)
        in the resumable distributed order, and one loader per non-empty evaluation split."""
        from ..data.loaders import build_loader
        from ..data.memory import in_memory_loaders

        batch, seed = self.batch_plan.per_rank_batch, self.options.seed
        order = dist.TrainSampler(self.data.train, seed=seed)
        self.batches_per_epoch = len(order) // batch
        if in_memory:
            self.train_loader, self.eval_loaders = in_memory_loaders(
                self.data, batch, order, dist.EvalSampler, self.preprocess, self.device, seed, self.ctx.rank, augment)
            return
        workers = self.options.workers
        self.train_loader = build_loader(self.data.train, batch, workers, seed, drop_last=True, order=order)
        splits = {split: getattr(self.data, split) for split in ("val", "test")}
        self.eval_loaders = {split: build_loader(dataset, batch, workers, seed, order=dist.EvalSampler(dataset),
                                                 seed_items=False)
                             for split, dataset in splits.items() if dataset is not None and len(dataset) > 0}

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
        """The network (from `weights` when given, with a new head if the recipe asks), the optimizer, schedule,
        EMA, loss and DDP wrapper, gathered into `self.state` (what checkpoints save) and `self.step`."""
        r = self.recipe
        model_kwargs = {"num_classes": len(self.class_names), "aux_logits": self.aux_logits, "in_chans": 3,
                        **start_model_kwargs(self.options.weights)}
        model = create_model(self.options.model, **model_kwargs)
        if self.options.weights and not self.resume:
            load_start_weights(model, self.options.weights, self.options.weights_source, r.new_head,
                               not self.options.quiet, self.log.warn)
            self.log.log(f"weights: {self.options.weights} ({self.options.weights_source})"
                         + (", new classifier head" if r.new_head else ""))
        elif r.new_head and not self.resume:
            self.log.warn(f"recipe {r.name} expects pretrained weights (--weights FILE); without them "
                          f"{self.options.model} trains from a random initialisation")
        init_from_data = getattr(model, "init_from_data", None)
        if init_from_data is not None and not self.options.weights and not self.resume:
            # The same images on every rank (the run's seed, not the rank's), so every replica starts alike.
            init_from_data(sample_model_inputs(self.data.train, DATA_INIT_IMAGES, self.preprocess, self.options.seed))
        for norm in self.frozen_batchnorms(model):
            norm.requires_grad_(False)
        # The training fast path: the model's own modules (BN keeps learning), channels_last when the recipe asks.
        model = optimize(model.to(self.device), mode="train", channels_last=self.channels_last)
        optimizer = build_optimizer(model, dataclasses.replace(r, lr=self.batch_plan.lr))
        steps_per_epoch = math.ceil(self.batches_per_epoch / r.accum_steps)
        self.state = RunState(
            self.options.model, model_kwargs, self.class_names, self.preprocess, model,
            ema=build_ema(model, r.ema_decay, r.ema_warmup) if r.ema_decay > 0 else None, optimizer=optimizer,
            scheduler=build_scheduler(optimizer, r, steps_per_epoch), scaler=self.precision.grad_scaler(),
            cadence=self.cadence, skipped=self.skipped)
        criterion = AuxLoss(self.aux_weight if self.aux_logits else 0.0, r.label_smoothing,
                            self.class_weights).to(self.device)
        self.step = TrainStep(dist.wrap_ddp(model, self.device, sync_bn=self.options.sync_bn), criterion,
                              self.precision, self.device, self.channels_last, self.aux_logits,
                              build_mixer(r, len(self.class_names)))

    @property
    def bn_frozen(self) -> bool:
        """BN in eval mode with frozen parameters: the recipe's `freeze_bn`, or a run from weights whose
        per-device batch is below `freeze_bn_below_batch`."""
        r = self.recipe
        small = bool(self.options.weights) and self.batch_plan.per_rank_batch < r.freeze_bn_below_batch
        return r.freeze_bn or small

    def frozen_batchnorms(self, model: nn.Module) -> list[nn.Module]:
        """The BatchNorm layers of `model` that stay frozen in this run (none unless `bn_frozen`)."""
        if not self.bn_frozen:
            return []
        return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    # ---- checkpoints ------------------------------------------------------------------------------------
    def save_last(self) -> None:
        """Write last.pt (rank 0 only); `epoch`/`batch_in_epoch` say where the run continues. Every rank
        sends its RNG state and running epoch sums, so a resumed DDP run continues each rank exactly."""
        per_rank = dist.all_gather_objects({"rng": rng_state(), "epoch_stats": dataclasses.asdict(self.state.stats)})
        if self.ctx.is_main:
            checkpoint = self.state.state_dict(rng_state(), self.config())
            save_checkpoint(self.run_dir / "last.pt", {**checkpoint, "per_rank": per_rank})

    def save_best(self) -> None:
        """Write best.pt: the evaluated weights (their average when the run keeps one) as a model file with the
        run's config and the epoch; the training state (optimizer and the rest) is last.pt's alone, which keeps
        a new best cheap to save."""
        state = self.state
        save_model(self.run_dir / "best.pt", state.eval_model().state_dict(), {**state.model_meta(), "config":
                   self.config()}, extra={"epoch": state.best_epoch, "val_acc": state.best_top1})

    def after_step(self) -> None:
        """Write last.pt every `save_every_steps` optimizer steps inside an epoch (for mid-epoch resume); on a
        stop request (SIGTERM, Ctrl-C), write it and end the run with `RunStopped`."""
        if self.stop.signum:
            self.save_last()
            raise RunStopped(f"stopped by {self.stop.signal_name} at epoch {self.state.epoch + 1}, batch "
                             f"{self.state.batch_in_epoch}: last.pt saved; continue with --resume {self.run_dir}",
                             self.stop.signum)
        every = self.options.save_every_steps
        if every and self.state.step % every == 0 and self.state.batch_in_epoch < self.batches_per_epoch:
            self.save_last()

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Put the run back to the state of checkpoint `ckpt` (called after the data loader exists)."""
        if ckpt["class_names"] != self.class_names:
            raise ConfigError(f"cannot resume {self.run_dir}: the data's classes differ from the checkpoint's")
        self.state.load_state_dict(ckpt)
        self.restore_rank_state(ckpt)
        self.log.log(f"resumed from {ckpt['path']}: epoch {self.state.epoch + 1}, batch {self.state.batch_in_epoch},"
                     f" step {self.state.step}")

    def restore_rank_state(self, ckpt: dict[str, Any]) -> None:
        """Each rank takes back its own RNG state and epoch sums. With a different number of processes than
        when saved, rank 0 takes all the sums (so the all-reduced epoch metrics stay right) and the random
        streams are re-seeded from (seed, step); the data order still continues exactly."""
        saved = ckpt.get("per_rank") or [{"rng": ckpt["rng"], "epoch_stats": ckpt["epoch_stats"]}]
        if len(saved) == self.ctx.world_size:
            self.state.stats = EpochStats(**saved[self.ctx.rank]["epoch_stats"])
            restore_rng_state(saved[self.ctx.rank]["rng"])
            return
        totals = {key: sum(s["epoch_stats"][key] for s in saved) for key in saved[0]["epoch_stats"]}
        self.state.stats = EpochStats(**totals) if self.ctx.is_main else EpochStats()
        seed_everything(dist.rank_seed(mix_seed(self.options.seed, self.state.step), self.ctx.rank))
        self.log.log(f"resuming with {self.ctx.world_size} processes instead of {len(saved)}: random streams "
                     "re-seeded")

    def config(self) -> dict[str, Any]:
        """The run's configuration as config.json (and every checkpoint) keeps it."""
        return {"options": self.options.to_dict(), "recipe": self.recipe.to_dict(), "model": self.options.model,
                "img_size": self.img_size, "aux_logits": self.aux_logits, "aux_weight": self.aux_weight,
                "world_size": self.ctx.world_size, "global_batch": self.batch_plan.global_batch,
                "lr": self.batch_plan.lr, "precision": self.precision.name, "channels_last": self.channels_last,
                "device": str(self.device)}

    # ---- the loop ---------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train every remaining epoch, validating and checkpointing on the cadence; return the report."""
        try:
            return self._run()
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
        # A single process stops cleanly on SIGTERM or Ctrl-C. DDP ranks would each stop at a different step
        # and wait forever in save_last's all-gather: there `--save-every-steps` bounds what a stop loses.
        with self.stop.listening() if self.ctx.world_size == 1 else contextlib.nullcontext():
            return self.train_epochs(started)

    def train_epochs(self, started: float) -> dict[str, Any]:
        """The epoch loop of `run`, from the restored state to the last epoch (or patience), then the report."""
        while self.state.epoch < self.recipe.epochs and not self.out_of_patience():
            epoch_started = time.time()
            self.set_train_mode()
            batches = batches_in_epoch(self.state.epoch, self.recipe.epochs, self.batches_per_epoch)
            metrics = train_one_epoch(self.state, self.step, self.train_loader, self.recipe, batches, self.log,
                                      self.note_skipped, self.after_step)
            if self.validation_due():
                metrics.update(self.validate())
            self.finish_epoch(metrics)
            self.replan_budget(time.time() - epoch_started, metrics["time"])
        return self.final_report(time.time() - started)

    def plan_budget(self, started: float) -> None:
        """Set the epochs from a step time measured on a copy of the model before training; ConfigError when
        the budget cannot hold one epoch."""
        self.budget = BudgetPlan(self.options.budget_s, started)
        epoch_s, train_s = estimate_epoch_s(self.state.model, self.budget_loss, self.data,
                                            self.batch_plan.per_rank_batch, self.batches_per_epoch, self.img_size,
                                            self.options.workers, self.device)
        self.budget.check_first_epoch(epoch_s, train_s)
        fit_schedule(self.recipe, self.budget.epochs_for(0, epoch_s, train_s))
        if self.recipe.name == AUTO_RECIPE and fit_regularisation(self.recipe):
            # Fewer epochs than the auto plan assumed: lighter augmentation and mixing (before any is drawn).
            self.data.train.transform = self.train_transform()
            self.step.mixer = build_mixer(self.recipe, len(self.class_names))
            r = self.recipe
            self.log.log(f"budget: a short run, lighter regularisation: mix_prob {r.mix_prob:.2f}, random_erasing "
                         f"{r.random_erasing:.2f}, auto_augment {r.auto_augment}")
        self.log.log(f"budget {self.options.budget_s:g}s: about {epoch_s:.1f}s an epoch (measured before "
                     f"training) -> {self.recipe.epochs:g} epochs; set again after each epoch from measured times")

    def budget_loss(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        """The training loss of `model` on one batch (for the budget's step timing)."""
        return self.step.loss(model, images, targets)[0]

    def replan_budget(self, epoch_s: float, train_s: float) -> None:
        """After each epoch, set the epochs again from the measured epoch times (`epoch_s`: the wall time of the
        epoch just done, training, validation and checkpoint; `train_s` its training); the cosine follows the
        new end."""
        if self.budget is None:
            return
        planned = self.budget.record(self.state.epoch, epoch_s, train_s, self.recipe.epochs)
        epochs = dist.broadcast_object(planned)
        if epochs != self.recipe.epochs:
            self.log.log(f"budget: {epoch_s:.1f}s an epoch measured -> {epochs:g} epochs")
            fit_schedule(self.recipe, epochs)
            self.log.save_config(self.config())

    def out_of_patience(self) -> bool:
        """True (said once in the log) when `patience` epochs passed without a better validation top-1."""
        waited = self.state.epoch - self.state.best_epoch
        if not self.options.patience or self.state.best_epoch == 0 or waited < self.options.patience:
            return False
        self.log.log(f"early stop after epoch {self.state.epoch}: no better val top-1 for {waited} epochs; best.pt "
                     f"keeps epoch {self.state.best_epoch}")
        return True

    def describe(self) -> None:
        """Say in the log what runs: model, size, recipe, precision, processes, data, balance, frozen BN."""
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
        """Training mode, with the frozen BatchNorm layers kept on their running statistics."""
        self.step.model.train()
        for norm in self.frozen_batchnorms(self.state.model):
            norm.eval()

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

    def validation_due(self) -> bool:
        """Whether the epoch just trained ends with validation (rank 0 decides: the ranks validate together)."""
        return bool(dist.broadcast_object(self.cadence.validate_now(self.state.epoch + 1, self.recipe.epochs)))

    def validate(self) -> dict[str, float]:
        """Validation metrics (`val_acc`, `val_loss`, ...) of the evaluated model; tells the cadence its cost."""
        if "val" not in self.eval_loaders:
            return {}
        started = time.perf_counter()
        metrics = evaluate(self.state.eval_model(), self.eval_batches("val"), len(self.class_names), self.step,
                           self.note_skipped)
        self.val_recall = metrics.pop("recall")
        self.cadence.validated(self.state.epoch + 1, time.perf_counter() - started, self.state.stats.train_seconds)
        self.cadence.interval = dist.broadcast_object(self.cadence.interval)
        return {f"val_{k}": v for k, v in metrics.items()}

    def finish_epoch(self, metrics: dict[str, float]) -> None:
        """Close the epoch: checkpoint last.pt (and best.pt on a new best val top-1), log the epoch line."""
        state = self.state
        metrics["time"] = state.stats.train_seconds
        images = dist.all_reduce_sum([state.stats.images])[0].item()  # every rank's images: the job's throughput
        metrics["images_per_s"] = images / max(metrics["time"], 1e-9)
        state.epoch += 1
        state.batch_in_epoch = 0
        improved = "val_acc" in metrics and metrics["val_acc"] > state.best_top1
        if improved:
            state.best_top1, state.best_epoch = metrics["val_acc"], state.epoch
        state.steps_seconds += metrics["time"]
        state.stats = EpochStats()
        if dist.broadcast_object(self.cadence.checkpoint_now(state.epoch >= self.recipe.epochs)):
            self.save_last()
            self.cadence.saved()
        if improved and self.ctx.is_main:
            self.save_best()
        self.log.log_epoch(state.epoch, self.recipe.epochs, metrics)
        self.log.scalars(state.epoch, {"nonfinite_skipped": state.nonfinite_total})

    def final_report(self, wall_time: float) -> dict[str, Any]:
        """Test-set metrics of best.pt when a test split exists; then report.json."""
        state = self.state
        extra: dict[str, Any] = {
            "model": self.options.model, "recipe": self.recipe.name, "img_size": self.img_size,
            "device": str(self.device), "precision": self.precision.name, "world_size": self.ctx.world_size,
            "steps": state.step, "batches_per_epoch": self.batches_per_epoch,
            "nonfinite_skipped": state.nonfinite_total, "wall_time_s": round(wall_time, 3),
            "steps_time_s": round(state.steps_seconds, 3),
            # Everything outside the training steps: setup, validation, checkpoints, plots and logs.
            "outside_steps_fraction": round(1 - state.steps_seconds / max(wall_time, 1e-9), 4),
            "last_checkpoint": str(self.run_dir / "last.pt"),
            "final_model": ("last.pt: the EMA of the weights at the last epoch" if state.ema is not None else
                            "last.pt: the weights at the last epoch") + "; best.pt: the epoch of best val top-1",
            "val_per_class_recall": dict(zip(self.class_names, self.val_recall, strict=False)),
            "class_weights": self.class_weights.tolist() if self.class_weights is not None else None,
            "budget_s": self.options.budget_s or None,
        }
        extra.update(self.test_best())
        for other in dist.all_gather_objects(self.skipped)[1:]:  # each rank saw its own share of the files
            for path, reason in other.items():
                self.skipped.setdefault(path, reason)
        report = self.log.write_report(extra, sorted(self.skipped.items()))
        summary = f"best val top-1 {100 * state.best_top1:.2f}% (epoch {state.best_epoch})" if state.best_top1 >= 0 \
            else "no validation split"
        self.log.log(f"done in {wall_time:.1f}s: {summary}; run folder {self.run_dir}")
        return report

    def test_best(self) -> dict[str, Any]:
        """`best_checkpoint`, and the test metrics of best.pt's weights when there is a test split."""
        best = self.run_dir / "best.pt"
        dist.barrier()
        if not dist.broadcast_object(best.is_file()):  # rank 0 decides: every rank must take part in the test
            return {}
        out: dict[str, Any] = {"best_checkpoint": str(best)}
        if "test" in self.eval_loaders:
            ckpt = load_checkpoint(best)
            self.state.eval_model().load_state_dict(ckpt["model"])
            test = evaluate(self.state.eval_model(), self.eval_loaders["test"], len(self.class_names), self.step,
                            self.note_skipped)
            out["test_per_class_recall"] = dict(zip(self.class_names, test.pop("recall"), strict=True))
            out.update({f"test_{k}": v for k, v in test.items()})
        return out

    def note_skipped(self, items: Iterable[tuple[str, str]]) -> None:
        """Remember files the data pipeline skipped (path -> reason) for report.json, saying each once in the
        log; under `--strict` the first one ends the run."""
        for path, reason in items:
            if self.options.strict:
                raise DataError(f"--strict: cannot use {path}: {reason}")
            if str(path) not in self.skipped:
                self.skipped[str(path)] = reason
                self.log.warn(f"skipped {path}: {reason}")


def default_run_dir(model: str) -> str:
    """runs/<model>-<YYYYmmdd-HHMMSS> under the current directory."""
    return str(Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}")
