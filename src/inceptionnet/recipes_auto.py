"""The `auto` recipe: hyper-parameters chosen from the data and the model, the field's modern parts.

`plan_auto` reads a `DataSummary` (image and class counts, class balance, typical image size) and the
model's spec and returns a `Recipe` with one line saying why. Its parts are the ones of today's strong
from-scratch recipes (timm, torchvision's "how to train state-of-the-art models" recipe): random-resized
crops, flips, TrivialAugmentWide, RandomErasing, MixUp/CutMix with a soft-target loss, label smoothing,
AdamW with warmup then cosine, an EMA of the weights, and the aux heads at their papers' weights. Every
field can still be overridden with `--set`.
"""

from __future__ import annotations

import dataclasses
import math

from torch import nn

from .data.summary import DataSummary
from .models import create_model, get_spec
from .recipes import AUTO_RECIPE, Recipe

# Models for small images (CIFAR-sized): chosen when no model is named and the images are this small.
SMALL_IMAGE_SIDE = 64
SMALL_IMAGE_MODEL = "inception_cifar"
# Images a run sees in total (epochs x train images), bounded below and above in epochs.
IMAGES_SEEN = 80_000
EPOCH_RANGE = (15, 80)
# A small set gains little from the full 224/299 px and trains 2-3x slower there.
SMALL_SET_IMAGES = 20_000
SMALL_SET_MAX_SIDE = 160
SIZE_STEP = 32
# From pretrained weights a run needs a quarter of the from-scratch epochs, and at least this many.
FINETUNE_MIN_EPOCHS = 5
# Images per class below which the augmentation and mixing are strongest.
FEW_PER_CLASS = 500
# Runs shorter than this (a tight --budget) cannot afford full mixing and erasing.
SHORT_RUN_EPOCHS = 10


def auto_model(summary: DataSummary, default: str) -> str:
    """The model for `summary` when none is named: a CIFAR-form network for small images, else `default`."""
    return SMALL_IMAGE_MODEL if 0 < summary.typical_side <= SMALL_IMAGE_SIDE else default


def plan_auto(summary: DataSummary, model: str, train_images: int) -> tuple[Recipe, str]:
    """A recipe for training `model` from scratch on `summary`'s data with `train_images` training images
    (after the validation split); returns (recipe, one line of why)."""
    spec = get_spec(model)
    img_size = _input_size(summary.typical_side, spec, train_images)
    batch = _batch_size(train_images)
    epochs = min(max(round(IMAGES_SEEN / max(train_images, 1)), EPOCH_RANGE[0]), EPOCH_RANGE[1])
    steps = epochs * max(train_images // batch, 1)
    per_class = train_images / max(summary.classes, 1)
    few = per_class < FEW_PER_CLASS
    small_images = img_size <= SMALL_IMAGE_SIDE
    has_bn = _has_batch_norm(model)
    recipe = Recipe(
        name=AUTO_RECIPE, epochs=epochs, batch_size=batch, img_size=img_size,
        optimizer="adamw", lr=2e-3 if has_bn else 5e-4, weight_decay=0.05, schedule="cosine",
        warmup_epochs=max(1.0, round(0.05 * epochs)), min_lr_ratio=0.01,
        label_smoothing=0.1, grad_clip=0.0 if has_bn else 2.0,
        # The EMA horizon (1 / (1 - decay)) is a tenth of the run, so the average follows the cosine's end.
        ema_decay=min(max(1.0 - 10.0 / steps, 0.99), 0.9998),
        scale_min=0.25 if few else 0.08, hflip=True,
        pad_crop=4 if small_images else 0, auto_augment="trivial", random_erasing=0.25,
        mixup_alpha=0.2 if few else 0.8, cutmix_alpha=1.0, mix_prob=0.5 if few else 1.0,
        balance="auto")
    strength = "strong" if few else "standard"
    why = (f"auto: {summary.describe()}; {train_images} to train ({per_class:.0f} a class) -> "
           f"{img_size}px ({'typical side' if img_size < spec.default_input_size else 'model default'}), "
           f"{epochs} epochs of {batch} (~{IMAGES_SEEN // 1000}k images seen), AdamW {recipe.lr:g} "
           f"warmup {recipe.warmup_epochs:g} + cosine, {strength} augmentation "
           f"({'pad-crop' if small_images else f'crops {recipe.scale_min:g}-1'}, flips, TrivialAugment, erasing, "
           f"MixUp/CutMix) for {'few' if few else 'many'} images a class, label smoothing 0.1, "
           f"EMA {recipe.ema_decay:.4f}"
           + ("" if has_bn else ", gradient clipping (no batch norm)")
           + (f", class-weighted loss ({summary.imbalance:.1f}x imbalance)" if summary.imbalance >= 3 else ""))
    return recipe, why


def fit_regularisation(recipe: Recipe) -> bool:
    """Lighten `recipe`'s regularisation when it runs fewer than SHORT_RUN_EPOCHS epochs (a tight budget): the
    mixing and erasing probabilities shrink in proportion and TrivialAugment is dropped below half of them.
    Returns whether anything changed."""
    if recipe.epochs >= SHORT_RUN_EPOCHS:
        return False
    share = recipe.epochs / SHORT_RUN_EPOCHS
    recipe.mix_prob *= share
    recipe.random_erasing *= share
    if recipe.epochs < SHORT_RUN_EPOCHS / 2:
        recipe.auto_augment = "none"
    return True


def _input_size(side: int, spec, train_images: int) -> int:
    """The typical image side rounded to SIZE_STEP, within the model's minimum and its default size (at most
    SMALL_SET_MAX_SIDE for a small set); the model's default for a CIFAR-form model or unknown sizes."""
    if side <= 0 or spec.default_input_size <= SMALL_IMAGE_SIDE:
        return spec.default_input_size
    high = spec.default_input_size if train_images > SMALL_SET_IMAGES else min(spec.default_input_size,
                                                                                SMALL_SET_MAX_SIDE)
    low = max(spec.min_input_size, 3 * SIZE_STEP)
    return min(max(SIZE_STEP * round(side / SIZE_STEP), low), max(high, low))


def _batch_size(train_images: int) -> int:
    """32 for a small set (more steps an epoch), 64 from 2,500 images; at most a quarter of the set."""
    wanted = 32 if train_images < 2_500 else 64
    return max(2, min(wanted, 2 ** int(math.log2(max(train_images // 4, 2)))))


def _has_batch_norm(model: str) -> bool:
    """Whether `model` normalises its activations (a network without, like the paper's GoogLeNet, wants a
    lower lr and gradient clipping)."""
    net = create_model(model, num_classes=2)
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def plan_finetune(summary: DataSummary, model: str, train_images: int, weights: str) -> tuple[Recipe, str]:
    """`plan_auto`'s recipe for a run that starts from `weights`, in fastai's fine_tune form: a new head
    trained alone for the first epoch, then the whole network with the body at a tenth of the lr, BN frozen
    when the per-device batch is small, and a quarter of the from-scratch epochs (at least FINETUNE_MIN_EPOCHS)."""
    recipe, why = plan_auto(summary, model, train_images)
    epochs = max(FINETUNE_MIN_EPOCHS, recipe.epochs // 4)
    recipe = dataclasses.replace(recipe, epochs=epochs, new_head=True, body_lr_scale=0.1, head_only_epochs=1,
                                 freeze_bn_below_batch=16, warmup_epochs=min(recipe.warmup_epochs, 1.0))
    return recipe, (f"{why}; from {weights}: new head alone for 1 epoch, then the body at 0.1x lr, "
                    f"{epochs} epochs in all")
