"""Each recipe's optimizer and learning rate at chosen steps; --set parsing."""

import math

import pytest
import torch

from inceptionnet import ConfigError, create_model
from inceptionnet.engine.optim import RMSpropTF, build_optimizer, build_scheduler
from inceptionnet.recipes import RECIPES, Recipe, apply_overrides, get_recipe, lr_factor, parse_set_options, parse_value

STEPS_PER_EPOCH = 10


def lrs_at(recipe: Recipe, steps: list[int], model_name: str = "inception_cifar") -> dict[int, list[float]]:
    """The lr of every param group when optimizer step `s` runs, for each s in `steps`."""
    model = create_model(model_name, num_classes=10)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, STEPS_PER_EPOCH)
    seen = {}
    for step in range(max(steps) + 1):
        if step in steps:
            seen[step] = [g["lr"] for g in optimizer.param_groups]
        optimizer.step()
        scheduler.step()
    return seen


def test_googlenet_paper_sgd_decays_4_percent_every_8_epochs():
    recipe = get_recipe("googlenet-paper")
    optimizer = build_optimizer(create_model("inception_cifar", num_classes=10), recipe)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and not optimizer.defaults["nesterov"]
    assert (recipe.aux_weight, recipe.scale_min, recipe.ratio_min, recipe.ratio_max) == (0.3, 0.08, 3 / 4, 4 / 3)
    assert recipe.random_interpolation and recipe.photometric > 0 and recipe.ema_decay > 0
    lrs = lrs_at(recipe, [0, 40, 80, 160])
    assert lrs[0] == [pytest.approx(0.01)]
    assert lrs[40] == [pytest.approx(0.01 * 0.96 ** 0.5)]  # half way through the first 8 epochs
    assert lrs[80] == [pytest.approx(0.01 * 0.96)]
    assert lrs[160] == [pytest.approx(0.01 * 0.96 ** 2)]


def test_staircase_holds_the_lr_until_the_period_ends():
    recipe = get_recipe("googlenet-paper")
    recipe.staircase = True
    assert lr_factor(recipe, 79, STEPS_PER_EPOCH) == 1.0
    assert lr_factor(recipe, 80, STEPS_PER_EPOCH) == pytest.approx(0.96)


@pytest.mark.parametrize("name", ["inception-v3-paper", "inception-v4-paper"])
def test_inception_paper_rmsprop_recipes(name):
    recipe = get_recipe(name)
    optimizer = build_optimizer(create_model("inception_cifar", num_classes=10), recipe)
    assert isinstance(optimizer, RMSpropTF)
    assert (optimizer.defaults["decay"], optimizer.defaults["eps"], optimizer.defaults["weight_decay"]) == \
        (0.9, 1.0, 4e-5)
    assert (recipe.grad_clip, recipe.label_smoothing, recipe.aux_weight) == (2.0, 0.1, 0.4)
    assert recipe.ema_decay > 0
    lrs = lrs_at(recipe, [0, 20, 40, 50])
    assert lrs[0] == [pytest.approx(0.045)]
    assert lrs[20] == [pytest.approx(0.045 * 0.94)]
    assert lrs[40] == [pytest.approx(0.045 * 0.94 ** 2)]
    assert lrs[50] == [pytest.approx(0.045 * 0.94 ** 2.5)]


def test_tutorial_adam_is_constant_adam_and_answers_to_its_former_name():
    recipe = get_recipe("tutorial-adam")
    assert get_recipe("seed-adam") == recipe
    optimizer = build_optimizer(create_model("inception_cifar", num_classes=10), recipe)
    assert isinstance(optimizer, torch.optim.Adam)
    assert (recipe.img_size, recipe.batch_size, recipe.epochs, recipe.resize_only) == (224, 32, 40, True)
    assert lrs_at(recipe, [0, 123])[123] == [pytest.approx(1e-4)]


def test_cifar_warms_up_then_follows_a_cosine():
    recipe = get_recipe("cifar")
    optimizer = build_optimizer(create_model("inception_cifar", num_classes=10), recipe)
    assert optimizer.defaults["nesterov"] and recipe.pad_crop == 4 and recipe.label_smoothing > 0
    warmup_steps = recipe.warmup_epochs * STEPS_PER_EPOCH
    total = recipe.epochs * STEPS_PER_EPOCH
    middle = int(warmup_steps + (total - warmup_steps) / 2)
    lrs = lrs_at(recipe, [0, 9, middle, total - 1])
    assert lrs[0] == [pytest.approx(0.1 / (warmup_steps + 1))]
    assert lrs[9] == [pytest.approx(0.1 * 10 / (warmup_steps + 1))]
    assert lrs[middle] == [pytest.approx(0.05)]
    progress = (total - 1 - warmup_steps) / (total - warmup_steps)
    assert lrs[total - 1] == [pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * progress)))]


def test_cifar_fast_warms_up_then_decays_linearly_to_7_percent_with_bn_at_64x():
    recipe = get_recipe("cifar-fast")
    model = create_model("inception_cifar_fast", num_classes=10)
    optimizer = build_optimizer(model, recipe)
    rest, norms = optimizer.param_groups
    norm_ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in norms["params"]} == {i for i in norm_ids if i in {id(p) for p in model.parameters()
                                                                               if p.requires_grad}}
    assert not {id(p) for p in rest["params"]} & norm_ids
    assert norms["lr"] == pytest.approx(64 * rest["lr"]) and rest["lr"] == pytest.approx(0.75)
    # The same decay a step: lr x weight decay is the others'.
    assert norms["lr"] * norms["weight_decay"] == pytest.approx(rest["lr"] * rest["weight_decay"])
    total = recipe.epochs * STEPS_PER_EPOCH
    warmup = recipe.warmup_epochs * STEPS_PER_EPOCH
    assert warmup == pytest.approx(0.23 * total, rel=0.01)
    middle = round(warmup + (total - warmup) / 2)
    lrs = lrs_at(recipe, [middle, total], "inception_cifar_fast")
    progress = (middle - warmup) / (total - warmup)
    assert lrs[middle][0] == pytest.approx(0.75 * (0.07 + 0.93 * (1 - progress)))
    assert lrs[total] == [pytest.approx(0.75 * 0.07), pytest.approx(64 * 0.75 * 0.07)]


def test_finetune_gives_the_body_a_lower_lr_than_the_new_head():
    recipe = get_recipe("finetune")
    model = create_model("inception_cifar", num_classes=10)
    optimizer = build_optimizer(model, recipe)
    head, body = optimizer.param_groups
    head_ids = {id(p) for name in model.classifier_names for p in model.get_submodule(name).parameters()}
    assert {id(p) for p in head["params"]} == head_ids
    assert head["lr"] == pytest.approx(0.01) and body["lr"] == pytest.approx(0.001)
    assert len(head["params"]) + len(body["params"]) == len(list(model.parameters()))
    assert recipe.new_head


def test_every_recipe_validates_and_get_recipe_copies():
    for name in RECIPES:
        get_recipe(name).validate()
    recipe = get_recipe("cifar")
    recipe.lr = 123.0
    assert get_recipe("cifar").lr == 0.1
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        get_recipe("nope")


def test_overrides_parse_each_field_type():
    recipe = get_recipe("cifar")
    unknown = apply_overrides(recipe, {"lr": "0.5", "nesterov": "false", "aux_weight": "0.2", "img_size": "none",
                                       "optimizer": "adam", "epochs": "3", "not_a_field": "1"})
    assert (recipe.lr, recipe.nesterov, recipe.aux_weight, recipe.img_size, recipe.optimizer, recipe.epochs) == \
        (0.5, False, 0.2, None, "adam", 3)
    assert unknown == ["not_a_field"]
    assert parse_set_options(["lr=0.1", " ema_decay = 0 "]) == {"lr": "0.1", "ema_decay": "0"}


@pytest.mark.parametrize("item,match", [("lr", "field=value"), ("=3", "field=value")])
def test_malformed_set_is_a_config_error(item, match):
    with pytest.raises(ConfigError, match=match):
        parse_set_options([item])


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="epochs=three: expected int"):
        parse_value("three", int, "epochs")
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        Recipe(optimizer="lbfgs").validate()
    with pytest.raises(ConfigError, match="ema_decay"):
        Recipe(ema_decay=1.5).validate()


def test_finetune_trains_the_head_alone_then_the_body_at_a_tenth():
    recipe = get_recipe("finetune")
    assert recipe.head_only_epochs == 1 and recipe.freeze_bn_below_batch == 16
    optimizer = build_optimizer(create_model("inception_cifar", num_classes=3), recipe)
    scheduler = build_scheduler(optimizer, recipe, steps_per_epoch=4)
    lrs = []
    for _ in range(4 * recipe.epochs):
        lrs.append({g["name"]: g["lr"] for g in optimizer.param_groups})
        optimizer.step()
        scheduler.step()
    assert all(step["body"] == 0.0 and step["head"] > 0 for step in lrs[:4])  # epoch 1: the head alone
    assert all(step["body"] > 0 for step in lrs[4:])
    peak = max(step["body"] for step in lrs)
    assert peak == pytest.approx(recipe.lr * recipe.body_lr_scale, rel=0.05)  # the body's own warmup, then decay
    assert lrs[-1]["body"] < peak / 10
