"""Named training recipes: every hyper-parameter default of the training engine lives here.

A `Recipe` is a flat dataclass so that each field can be overridden from the CLI
(`--set field=value`) and saved as-is into a run folder's `config.json`. Learning-rate schedules
are written in epochs, as the papers give them, but the engine evaluates them at every optimizer
step with a fractional epoch (see `lr_factor`), so a run of a few epochs still sees the decay.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass

from .errors import ConfigError
from .runtime import PRECISIONS

OPTIMIZERS = ("sgd", "rmsprop_tf", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "linear")
AUTO_AUGMENTS = ("none", "trivial", "randaugment")
BALANCE_MODES = ("auto", "loss", "none")
# The recipe chosen from the data (see recipes_auto.py) when `--data` is given and no recipe is named.
AUTO_RECIPE = "auto"


@dataclass
class Recipe:
    """Hyper-parameters of one training run.

    `None` means "ask the model's ModelSpec" (input size, aux heads and their loss weight).
    `step_every`/`step_gamma`: lr x gamma every `step_every` epochs; `staircase=False` spreads the
    decay smoothly over the steps in between (TF `exponential_decay`). `warmup_epochs` ramps the lr
    linearly from 0 and applies to every schedule. `ema_decay` > 0 keeps a Polyak/EMA average of the
    weights that is evaluated and saved; `ema_warmup` lowers the decay early on
    (min(decay, (1 + n) / (10 + n)) after n updates) so short runs get a useful average.
    `body_lr_scale` multiplies the lr of every parameter outside the classifier heads (fine-tuning).
    `norm_lr_scale` multiplies the lr of normalisation layers' parameters and divides their weight decay, so
    their decay per step stays that of the rest (airbench's BN-bias lr scale).
    `precision` is auto/fp32/bf16/fp16 and `channels_last` None means "where it measured faster"
    (`inceptionnet.runtime`: auto is bf16 where the device has native bf16, fp32 elsewhere).
    Fine-tuning in two stages (fastai's fine_tune): for the first `head_only_epochs` only the classifier
    heads learn (the body's lr is 0), then the whole network with the body at `body_lr_scale`, its
    schedule (warmup, then the decay) starting afresh at the unfreeze. `freeze_bn` keeps every BN in eval
    mode with frozen statistics and affine parameters; `freeze_bn_below_batch` does so only when the
    per-device batch is smaller than that (small batches give noisy statistics that spoil pretrained ones).
    """

    name: str = "custom"
    epochs: int = 30
    batch_size: int = 32
    img_size: int | None = None
    # optimizer
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    rmsprop_decay: float = 0.9
    rmsprop_eps: float = 1.0
    body_lr_scale: float = 1.0
    norm_lr_scale: float = 1.0
    # schedule
    schedule: str = "cosine"
    step_every: float = 1.0
    step_gamma: float = 1.0
    staircase: bool = False
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    # loss and regularisation
    aux_logits: bool | None = None
    aux_weight: float | None = None
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    ema_warmup: bool = True
    # augmentation (inceptionnet.data.TrainAugment)
    scale_min: float = 0.08
    scale_max: float = 1.0
    ratio_min: float = 3 / 4
    ratio_max: float = 4 / 3
    hflip: bool = True
    photometric: float = 0.0
    random_interpolation: bool = False
    pad_crop: int = 0
    resize_only: bool = False
    # model adaptation and engine options
    new_head: bool = False
    head_only_epochs: float = 0.0
    freeze_bn: bool = False
    freeze_bn_below_batch: int = 0
    accum_steps: int = 1
    precision: str = "auto"
    channels_last: bool | None = None
    max_nonfinite: int = 20
    # augmentation and mixing of the field's recipes (timm, torchvision's "how to train SOTA" recipe)
    auto_augment: str = "none"
    random_erasing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    # class imbalance: "auto" weights the loss by inverse class frequency when the largest class has
    # IMBALANCE_RATIO x the images of the smallest; "loss" always; "none" never
    balance: str = "auto"

    def validate(self) -> Recipe:
        """Raise `ConfigError` naming the first field whose value cannot work; return self."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for key, value, allowed in (("auto_augment", self.auto_augment, AUTO_AUGMENTS),
                                    ("balance", self.balance, BALANCE_MODES)):
            if value not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "accum_steps": self.accum_steps, "step_every": self.step_every,
                    "max_nonfinite": self.max_nonfinite, "norm_lr_scale": self.norm_lr_scale}
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{key} must be positive, got {value}")
        if self.img_size is not None and self.img_size < 1:
            raise ConfigError(f"img_size must be positive, got {self.img_size}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 < self.scale_min <= self.scale_max <= 1.0:
            raise ConfigError(f"need 0 < scale_min <= scale_max <= 1, got {self.scale_min}, {self.scale_max}")
        if not 0.0 < self.ratio_min <= self.ratio_max:
            raise ConfigError(f"need 0 < ratio_min <= ratio_max, got {self.ratio_min}, {self.ratio_max}")
        for key in ("weight_decay", "warmup_epochs", "grad_clip", "body_lr_scale", "min_lr_ratio", "pad_crop",
                    "photometric", "mixup_alpha", "cutmix_alpha", "head_only_epochs", "freeze_bn_below_batch"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must not be negative, got {getattr(self, key)}")
        for key in ("random_erasing", "mix_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RECIPES: dict[str, Recipe] = {
    # Szegedy et al. 2014, section 6: asynchronous SGD momentum 0.9, lr -4% every 8 epochs,
    # Polyak averaging, 8-100% area crops with aspect 3/4-4/3, photometric distortion,
    # random resize interpolation, aux losses weighted 0.3.
    "googlenet-paper": Recipe(
        name="googlenet-paper", epochs=90, batch_size=32, optimizer="sgd", lr=0.01, momentum=0.9,
        weight_decay=2e-4, schedule="step", step_every=8, step_gamma=0.96, aux_logits=True, aux_weight=0.3,
        ema_decay=0.9999, photometric=0.4, random_interpolation=True),
    # Szegedy et al. 2015 (v3) section 8 / 2016 (v4) section 4: RMSProp decay 0.9, eps 1.0, lr 0.045
    # x0.94 every 2 epochs, gradient clipping 2.0, label smoothing 0.1, weight averaging.
    "inception-v3-paper": Recipe(
        name="inception-v3-paper", epochs=100, batch_size=32, optimizer="rmsprop_tf", lr=0.045,
        weight_decay=4e-5, rmsprop_decay=0.9, rmsprop_eps=1.0, schedule="step", step_every=2, step_gamma=0.94,
        grad_clip=2.0, label_smoothing=0.1, aux_weight=0.4, ema_decay=0.9999, photometric=0.4),
    "inception-v4-paper": Recipe(
        name="inception-v4-paper", epochs=100, batch_size=32, optimizer="rmsprop_tf", lr=0.045,
        weight_decay=4e-5, rmsprop_decay=0.9, rmsprop_eps=1.0, schedule="step", step_every=2, step_gamma=0.94,
        grad_clip=2.0, label_smoothing=0.1, aux_weight=0.4, ema_decay=0.9999, photometric=0.4),
    # The PyTorch ImageFolder tutorial: images resized to 224 without augmentation, Adam lr 1e-4, batch 32,
    # 40 epochs.
    "tutorial-adam": Recipe(
        name="tutorial-adam", epochs=40, batch_size=32, img_size=224, optimizer="adam", lr=1e-4, weight_decay=0.0,
        schedule="constant", resize_only=True, hflip=False, aux_logits=False),
    # Strong small-image recipe: pad-and-crop + flip, nesterov SGD, warmup then cosine, label smoothing.
    "cifar": Recipe(
        name="cifar", epochs=60, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
        weight_decay=5e-4, schedule="cosine", warmup_epochs=2, label_smoothing=0.1, pad_crop=4, hflip=True),
    # From loaded weights: the fresh head alone for an epoch, then the whole network with the body at a tenth of
    # the lr, warmup then cosine; BN frozen when a device sees fewer than 16 images a step.
    "finetune": Recipe(
        name="finetune", epochs=10, batch_size=32, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True,
        weight_decay=1e-4, body_lr_scale=0.1, schedule="cosine", warmup_epochs=1, label_smoothing=0.1,
        scale_min=0.25, new_head=True, head_only_epochs=1, freeze_bn_below_batch=16),
    # `inceptionnet demo`: GoogLeNet-BN with its aux heads on the synthetic shapes at 32 px (an epoch costs about
    # half of 64 px, and 40 px learnt no faster per epoch), channels_last (1.18x a step), Adam 2e-3 (1e-3 and
    # label smoothing were slower to converge). Measured on two CPU cores: see the README's demo section.
    "demo": Recipe(
        name="demo", epochs=18, batch_size=32, img_size=32, optimizer="adam", lr=2e-3, weight_decay=0.0,
        schedule="cosine", warmup_epochs=0.2, aux_logits=True, aux_weight=0.3, ema_decay=0.99, scale_min=0.8,
        hflip=True),
    # The TF2 course's CIFAR-10 experiments: Adam 1e-3, batch 128, 5 epochs, the images as they are (no
    # augmentation, no weight decay, constant lr). Its ResNet-18 runs the same with batch 32 (tf-course-resnet).
    "tf-course": Recipe(
        name="tf-course", epochs=5, batch_size=128, optimizer="adam", lr=1e-3, weight_decay=0.0,
        schedule="constant", resize_only=True, hflip=False),
    "tf-course-resnet": Recipe(
        name="tf-course-resnet", epochs=5, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0,
        schedule="constant", resize_only=True, hflip=False),
    # Time to accuracy on CIFAR-10 (inception_cifar_fast), with airbench's hyper-parameters restated for a
    # mean loss at batch 512: nesterov SGD at momentum 0.85, lr 0.75 and weight decay 1.33e-3 (airbench's 11.5
    # and 0.0153 "per 1024 examples"), BN parameters at 64x the lr, a linear warmup over the first 23 % of the
    # steps and a linear decay to 7 % of the peak, label smoothing 0.2, an average of the weights, random
    # translation by 2 px and flips (batched on the device: data/memory.py); bf16 and channels_last where they
    # pay (precision auto).
    "cifar-fast": Recipe(
        name="cifar-fast", epochs=18, batch_size=512, optimizer="sgd", lr=0.75, momentum=0.85, nesterov=True,
        weight_decay=1.33e-3, norm_lr_scale=64.0, schedule="linear", warmup_epochs=4.14, min_lr_ratio=0.07,
        label_smoothing=0.2, ema_decay=0.99, pad_crop=2, hflip=True),
}


# Former names still accepted.
RECIPE_ALIASES = {"seed-adam": "tutorial-adam"}


def recipe_names() -> list[str]:
    """Names of the built-in recipes, `auto` (chosen from the data) first."""
    return [AUTO_RECIPE, *RECIPES]


def get_recipe(name: str) -> Recipe:
    """A fresh copy of recipe `name` (or of the one an alias names); `ConfigError` naming the known ones
    otherwise. `auto` gives the defaults that `recipes_auto.plan_auto` fills in from the data."""
    if name == AUTO_RECIPE:
        return Recipe(name=AUTO_RECIPE)
    try:
        return dataclasses.replace(RECIPES[RECIPE_ALIASES.get(name, name)])
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(recipe_names())}") from None


def parse_value(text: str, annotation: typing.Any, key: str) -> typing.Any:
    """Turn the string `text` into a value of `annotation` (bool, int, float, str, or an optional one).

    "none"/"null" give None for optional fields; booleans accept true/false/1/0/yes/no/on/off.
    """
    options = _type_options(annotation)
    if type(None) in options and text.strip().lower() in ("none", "null"):
        return None
    for kind in options:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
        elif kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                continue
        elif kind is str:
            return text
    names = " or ".join(k.__name__ for k in options)
    raise ConfigError(f"--set {key}={text}: expected {names}")


def _type_options(annotation: typing.Any) -> list[type]:
    if isinstance(annotation, str):  # postponed annotations: evaluate the simple builtin names
        return [{"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}[part.strip()]
                for part in annotation.split("|")]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return list(typing.get_args(annotation))
    return [annotation]


def apply_overrides(obj: typing.Any, overrides: dict[str, str]) -> list[str]:
    """Set the dataclass fields of `obj` named in `overrides` (values as strings, parsed by field type).

    Returns the keys that are not fields of `obj`, so a caller can try them on another object.
    """
    fields = {f.name: f for f in dataclasses.fields(obj)}
    unknown = []
    for key, text in overrides.items():
        field = fields.get(key.replace("-", "_"))
        if field is None:
            unknown.append(key)
            continue
        setattr(obj, field.name, parse_value(text, field.type, key))
    return unknown


def parse_set_options(items: list[str]) -> dict[str, str]:
    """`["lr=0.1", "ema_decay=0"]` -> `{"lr": "0.1", "ema_decay": "0"}`; ConfigError for a malformed item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects field=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def body_lr_factor(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """The body's lr multiplier at `step`: 0 for the first `head_only_epochs`, then `lr_factor` of a run
    that starts there (its warmup and decay over the remaining epochs)."""
    frozen_steps = recipe.head_only_epochs * steps_per_epoch
    if step < frozen_steps:
        return 0.0
    rest = dataclasses.replace(recipe, epochs=max(recipe.epochs - recipe.head_only_epochs, 1e-12))
    return lr_factor(rest, int(step - math.ceil(frozen_steps)), steps_per_epoch)


def lr_factor(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """The multiplier of the base lr at optimizer step `step` (0-based), for LambdaLR.

    The epoch is fractional (`step / steps_per_epoch`): warmup ramps linearly over `warmup_epochs`,
    then "step" decays by `step_gamma` per `step_every` epochs (floored when `staircase`), "cosine"
    and "linear" go from 1 to `min_lr_ratio` by the end of `epochs` (along a half cosine or a straight
    line), and "constant" stays at 1.
    """
    epoch = step / steps_per_epoch
    if recipe.warmup_epochs > 0 and epoch < recipe.warmup_epochs:
        return (step + 1) / (recipe.warmup_epochs * steps_per_epoch + 1)
    if recipe.schedule == "step":
        periods = epoch / recipe.step_every
        return recipe.step_gamma ** (math.floor(periods) if recipe.staircase else periods)
    if recipe.schedule in ("cosine", "linear"):
        span = max(recipe.epochs - recipe.warmup_epochs, 1e-12)
        progress = min(max((epoch - recipe.warmup_epochs) / span, 0.0), 1.0)
        remaining = 0.5 * (1 + math.cos(math.pi * progress)) if recipe.schedule == "cosine" else 1 - progress
        return recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * remaining
    return 1.0
