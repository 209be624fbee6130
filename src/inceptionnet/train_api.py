"""`inceptionnet.train(...)`: the Python face of `inceptionnet train`, with the same options."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .recipes import AUTO_RECIPE, Recipe, apply_overrides, get_recipe

DEFAULT_MODEL = "googlenet_bn"
# With data and no model named, training starts from these ImageNet weights (README: "Pretrained by default").
DEFAULT_PRETRAINED = "googlenet_tv.tv_in1k"
# Options that may change when a run is resumed; everything else comes from the checkpoint's config.
RESUMABLE_CHANGES = ("epochs", "workers", "device", "quiet", "save_every_steps", "patience")


def train(model: str | None = None, recipe: str | None = None, data: str | None = None, *,
          epochs: int | None = None, batch_size: int | None = None, img_size: int | None = None,
          lr: float | None = None, precision: str | None = None, overrides: dict[str, Any] | None = None,
          resume: str | None = None, out: str | None = None, **options: Any) -> dict[str, Any]:
    """Train `model` (default googlenet_bn) with `recipe` (default: the model's ModelSpec.default_recipe) on
    `data` (None: the embedded synthetic set; a folder of class folders, a train/val folder or CIFAR-10).

    `overrides` sets any Recipe or TrainOptions field by name (as `--set field=value` does; values may be
    strings). Other keyword options are TrainOptions fields: val_split, workers, device, seed, deterministic,
    strict, quiet, weights, weights_source, save_every_steps, patience, budget_s; `budget` takes a duration
    ("10m", "90s", "1h30m"). With `data` and no `recipe`, the `auto` recipe is chosen from the data (fine-tuning
    when the run starts from weights). `pretrained` starts from published weights: a tag, True for the model's
    default, False for none; unset, a run on `data` with no model named starts from DEFAULT_PRETRAINED's
    ImageNet weights when they are cached or can be downloaded. `resume` continues the run folder given,
    exactly where its last.pt stopped. Returns the report written to report.json.
    """
    from .engine.train import fit

    options_obj, recipe_obj, ckpt = prepare_run(model, recipe, data, epochs=epochs, batch_size=batch_size,
                                                img_size=img_size, lr=lr, precision=precision,
                                                overrides=overrides,
                                                resume=resume, out=out, **options)
    return fit(options_obj, recipe_obj, ckpt)


def prepare_run(model: str | None = None, recipe: str | None = None, data: str | None = None, *,
                epochs: int | None = None, batch_size: int | None = None, img_size: int | None = None,
                lr: float | None = None, precision: str | None = None, overrides: dict[str, Any] | None = None,
                resume: str | None = None, out: str | None = None, **options: Any):
    """Resolve the arguments of `train` into (TrainOptions, Recipe, checkpoint dict or None), validated."""
    from .engine.budget import parse_duration
    from .engine.train import TrainOptions, default_run_dir

    explicit = {"epochs": epochs, "batch_size": batch_size, "img_size": img_size, "lr": lr, "precision": precision}
    explicit = {k: v for k, v in explicit.items() if v is not None}
    if options.get("budget") is not None:
        options["budget_s"] = parse_duration(options.pop("budget"))
    options.pop("budget", None)
    pretrained = options.pop("pretrained", None)
    option_fields = {f.name for f in dataclasses.fields(TrainOptions)}
    unknown = sorted(set(options) - option_fields)
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
    if resume is not None:
        return _prepare_resume(resume, model, recipe, data, explicit, overrides, out, options)
    model = _choose_start_weights(model, data, pretrained, options)
    from .models import get_spec

    auto = recipe == AUTO_RECIPE or (recipe is None and data is not None)
    run_options = TrainOptions(model=model or DEFAULT_MODEL, data=data, **options)
    _set_fields(Recipe(), run_options, overrides or {})  # options such as val_split shape the auto plan
    if auto:
        recipe_obj, why = _auto_recipe(run_options, model)
    else:
        recipe_obj, why = get_recipe(recipe or get_spec(run_options.model).default_recipe), None
    run_options.recipe = recipe_obj.name
    preset_lr, preset_batch = recipe_obj.lr, recipe_obj.batch_size
    changed = {**explicit, **(overrides or {})}
    _set_fields(recipe_obj, run_options, changed)
    if recipe_obj.lr != preset_lr:  # an lr the user chose is used as given, not scaled to the batch
        run_options.scale_lr = False
    run_options.reference_batch = run_options.reference_batch or preset_batch
    if why and changed:
        why += "; given: " + ", ".join(f"{k}={v}" for k, v in changed.items())
    run_options.recipe_note = why
    run_options.out = out or default_run_dir(run_options.model)
    return run_options.validate(), recipe_obj.validate(), None


def _auto_recipe(options, model: str | None) -> tuple[Recipe, str]:
    """The `auto` recipe for `options.data` (the model too when `model` is None); (recipe, why). From weights
    (`options.weights`) it is the fine-tuning form of the plan."""
    from .data.summary import summarize_data
    from .data.synthetic import ensure_synthetic_dataset
    from .recipes_auto import auto_model, plan_auto, plan_finetune

    summary = summarize_data(options.data if options.data is not None else ensure_synthetic_dataset(), options.seed)
    if model is None:
        options.model = auto_model(summary, DEFAULT_MODEL)
    train_images = summary.images if summary.presplit else round(summary.images * (1 - options.val_split))
    if options.weights:
        return plan_finetune(summary, options.model, train_images, options.weights)
    return plan_auto(summary, options.model, train_images)


def _choose_start_weights(model: str | None, data: str | None, pretrained: bool | str | None,
                          options: dict[str, Any]) -> str | None:
    """The model to train (None: the auto recipe's choice), setting `options["weights"]` to the published
    weights it starts from.

    `pretrained`: a tag, True (the model's default weights), False (from scratch) or None (the default:
    with `data` and no model named, DEFAULT_PRETRAINED if its file is cached or can be downloaded, else
    from scratch after one line saying how to get it)."""
    from .errors import WeightsError
    from .weights import fetch_weights, get_weights, resolve_weights

    if pretrained is None and model is None and data is not None and not options.get("weights"):
        spec = get_weights(DEFAULT_PRETRAINED)
        try:
            fetch_weights(spec, progress=not options.get("quiet"))
        except WeightsError as e:
            print(f"inceptionnet train: no ImageNet weights, training from scratch: {e}", file=sys.stderr)
            return None
        options["weights"] = spec.tag
        return spec.model
    if not pretrained:
        return model
    if options.get("weights"):
        raise ConfigError("--pretrained and --weights both name start weights; give one")
    tag = pretrained if isinstance(pretrained, str) else None
    spec = resolve_weights(model or (tag or DEFAULT_PRETRAINED).split(".")[0], pretrained=True, weights=tag)
    options["weights"] = spec.tag
    return spec.model


def _prepare_resume(resume: str, model, recipe, data, explicit: dict, overrides, out, options: dict):
    from .engine.checkpoint import load_checkpoint
    from .engine.train import TrainOptions

    run_dir = Path(resume)
    path = run_dir / "last.pt" if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise ConfigError(f"--resume {resume}: no last.pt there to continue from")
    ckpt = load_checkpoint(path)
    config = ckpt.get("config") or {}
    if "options" not in config or "recipe" not in config:
        raise ConfigError(f"--resume {resume}: {path} is not a training checkpoint (no run config)")
    changes = {**explicit, **options, **(overrides or {})}
    fixed = [k for k in changes if k not in RESUMABLE_CHANGES]
    fixed += [name for name, value in (("model", model), ("recipe", recipe), ("data", data), ("out", out))
              if value is not None]
    if fixed:
        raise ConfigError(f"--resume continues the saved configuration; only {', '.join(RESUMABLE_CHANGES)} may "
                          f"change, not: {', '.join(fixed)}")
    run_options = TrainOptions(**config["options"])
    recipe_obj = Recipe(**config["recipe"])
    _set_fields(recipe_obj, run_options, changes)
    run_options.out = str(path.parent)
    return run_options.validate(), recipe_obj.validate(), ckpt


def _set_fields(recipe: Recipe, options: Any, values: dict[str, Any]) -> None:
    """Set each of `values` on the recipe, or else on the options; string values are parsed by field type."""
    for key, value in values.items():
        if isinstance(value, str):
            remaining = apply_overrides(recipe, {key: value})
            if remaining and apply_overrides(options, {key: value}):
                raise ConfigError(f"unknown field {key!r} (not a recipe field nor a training option)")
            continue
        name = key.replace("-", "_")
        target = recipe if hasattr(recipe, name) else options if hasattr(options, name) else None
        if target is None or not dataclasses.is_dataclass(target):
            raise ConfigError(f"unknown field {key!r} (not a recipe field nor a training option)")
        setattr(target, name, value)
