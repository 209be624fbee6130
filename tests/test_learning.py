"""The `auto` recipe, --budget, --patience, class imbalance, MixUp/CutMix and the stable-result report."""

import json
import math

import pytest
import torch

from image_folders import make_image_folder
from inceptionnet import ConfigError, train
from inceptionnet.cli import build_parser, main
from inceptionnet.data.summary import DataSummary, summarize_data
from inceptionnet.engine.balance import class_weights
from inceptionnet.engine.budget import BudgetPlan, batches_in_epoch, parse_duration
from inceptionnet.engine.losses import AuxLoss
from inceptionnet.engine.mixing import build_mixer
from inceptionnet.engine.train import Trainer
from inceptionnet.recipes import Recipe
from inceptionnet.recipes_auto import auto_model, fit_regularisation, plan_auto
from inceptionnet.train_api import prepare_run


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("inceptionnet train: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_set_takes_several_assignments_after_one_flag_or_repeated():
    args = build_parser().parse_args(["train", "--set", "lr=0.1", "ema_decay=0", "--set", "epochs=2", "--quiet"])
    assert args.overrides == ["lr=0.1", "ema_decay=0", "epochs=2"] and args.quiet


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2.5m", 150),
                                          ("45", 45)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten minutes", "10x", "", "0s", "m"])
def test_malformed_durations_are_config_errors(text):
    with pytest.raises(ConfigError, match="--budget"):
        parse_duration(text)


def test_a_malformed_budget_is_one_line_and_exit_2(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    assert main(["train", "--data", str(data), "--budget", "5 parsecs", "--out", str(tmp_path / "run")]) == 2
    assert "--budget" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_the_summary_reads_counts_balance_and_typical_size(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=(9, 3, 4), size=40, ext="jpg")
    summary = summarize_data(data)
    assert (summary.images, summary.class_counts, summary.typical_side) == (16, (9, 3, 4), 40)
    assert summary.imbalance == 3.0 and not summary.presplit


def test_auto_fits_size_and_augmentation_to_the_data():
    photos = DataSummary(images=2000, class_counts=(200,) * 10, typical_side=100, source="photos")
    recipe, why = plan_auto(photos, "googlenet_bn", 1600)
    assert recipe.img_size == 96 and recipe.scale_min == 0.25 and recipe.auto_augment == "trivial"
    assert recipe.mixup_alpha > 0 and recipe.cutmix_alpha > 0 and recipe.random_erasing > 0 and recipe.ema_decay > 0
    assert recipe.optimizer == "adamw" and recipe.schedule == "cosine" and recipe.warmup_epochs >= 1
    assert recipe.aux_weight is None  # the model's paper weight
    assert "96px" in why and "AdamW" in why
    large = DataSummary(images=100_000, class_counts=(1000,) * 100, typical_side=500, source="large")
    big, _ = plan_auto(large, "googlenet_bn", 90_000)
    assert big.img_size == 224 and big.scale_min == 0.08 and big.batch_size == 64 and big.epochs < recipe.epochs
    tiny = DataSummary(images=600, class_counts=(300, 50), typical_side=32, source="tiny")
    assert auto_model(tiny, "googlenet_bn") == "inception_cifar"
    assert auto_model(photos, "googlenet_bn") == "googlenet_bn"
    small, why = plan_auto(tiny, "inception_cifar", 480)
    assert small.img_size == 32 and small.pad_crop == 4 and "imbalance" in why
    paper, why = plan_auto(photos, "googlenet", 1600)
    assert paper.grad_clip > 0 and paper.lr < recipe.lr and "no batch norm" in why


def test_a_short_run_gets_lighter_regularisation():
    photos = DataSummary(images=2000, class_counts=(200,) * 10, typical_side=100, source="photos")
    recipe, _ = plan_auto(photos, "googlenet_bn", 1600)
    full = (recipe.mix_prob, recipe.random_erasing)
    assert not fit_regularisation(recipe) and (recipe.mix_prob, recipe.random_erasing) == full
    recipe.epochs = 3
    assert fit_regularisation(recipe)
    assert recipe.mix_prob == pytest.approx(0.3 * full[0]) and recipe.random_erasing == pytest.approx(0.3 * full[1])
    assert recipe.auto_augment == "none"


def test_auto_is_the_default_with_data_and_set_overrides_it(tmp_path):
    data = make_image_folder(tmp_path / "data", size=40)
    options, recipe, _ = prepare_run(data=str(data), out=str(tmp_path / "run"),
                                     overrides={"mixup_alpha": "0", "patience": "3"})
    assert recipe.name == "auto" and options.recipe == "auto" and options.model == "inception_cifar"
    assert recipe.mixup_alpha == 0 and recipe.cutmix_alpha > 0 and options.patience == 3
    assert options.recipe_note.startswith("auto:")
    _, named, _ = prepare_run("googlenet_bn", "seed-adam", str(data), out=str(tmp_path / "run2"))
    assert named.name == "tutorial-adam" and named.optimizer == "adam"
    _, synthetic, _ = prepare_run(out=str(tmp_path / "run3"))
    assert synthetic.name == "tutorial-adam"  # no --data: the model's own recipe


def test_class_weights_only_from_3x_imbalance_unless_asked():
    assert class_weights([30, 11], "auto")[0] is None
    weights, note = class_weights([30, 10], "auto")
    assert "inverse class frequency" in note
    assert torch.allclose(weights, torch.tensor([40 / 60, 40 / 20]))
    assert (weights * torch.tensor([30.0, 10.0])).sum() == pytest.approx(40.0)  # image-weighted mean 1
    assert class_weights([30, 10], "none")[0] is None and class_weights([10, 10], "loss")[0] is not None


def test_mixing_gives_soft_targets_and_the_loss_takes_them():
    recipe = Recipe(mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=1.0)
    mixer = build_mixer(recipe, num_classes=4)
    images, targets = torch.rand(8, 3, 16, 16), torch.arange(8) % 4
    mixed, soft = mixer(images, targets)
    assert mixed.shape == images.shape and soft.shape == (8, 4)
    assert torch.allclose(soft.sum(1), torch.ones(8)) and not torch.equal(mixed, images)
    assert build_mixer(Recipe(), 4) is None
    logits = torch.randn(8, 4)
    loss = AuxLoss(label_smoothing=0.1)
    one_hot = torch.nn.functional.one_hot(targets, 4).float()
    assert torch.allclose(loss(logits, [], one_hot)[0], loss(logits, [], targets)[0])


@pytest.mark.slow
def test_auto_run_on_an_imbalanced_folder_reports_balance_and_stability(tmp_path, capsys, one_thread):
    data = make_image_folder(tmp_path / "data", per_class=(12, 12, 4), size=40, ext="jpg")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--epochs", "2", "--batch-size", "8", "--device", "cpu",
                 "--out", str(out), "--set", "precision=fp32", "ema_decay=0.9"]) == 0
    printed = capsys.readouterr().out
    assert "auto:" in printed and "val_bacc" in printed and "inverse class frequency" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["class_weights"] is not None and set(report["val_per_class_recall"]) == {"class0", "class1",
                                                                                        "class2"}
    for key in ("final_val_acc", "best_val_acc", "last5_val_acc_mean", "best_val_bacc", "final_val_bacc"):
        assert 0.0 <= report[key] <= 1.0, key
    assert "EMA" in report["final_model"]
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["name"] == "auto" and config["options"]["recipe_note"].startswith("auto:")
    assert config["recipe"]["ema_decay"] == 0.9 and config["recipe"]["auto_augment"] == "trivial"


def test_patience_stops_and_the_report_gives_final_best_and_last5(tmp_path, monkeypatch, one_thread):
    data = make_image_folder(tmp_path / "data", size=8)
    accs = iter([0.5, 0.6, 0.55, 0.58, 0.9, 0.9])
    monkeypatch.setattr(Trainer, "validate", lambda self: {"val_acc": next(accs), "val_bacc": 0.5})
    report = train("inception_cifar", "cifar", str(data), epochs=6, batch_size=8, device="cpu", quiet=True,
                   img_size=8, out=str(tmp_path / "run"), patience=2)
    assert report["epochs_run"] == 4 and report["best_epoch"] == 2
    assert (report["best_val_acc"], report["final_val_acc"]) == (0.6, 0.58)
    assert report["last5_val_acc_mean"] == pytest.approx((0.5 + 0.6 + 0.55 + 0.58) / 4)
    assert "early stop after epoch 4" in (tmp_path / "run" / "log.txt").read_text()


def test_a_single_image_class_stays_in_train_and_is_named(tmp_path, one_thread):
    data = make_image_folder(tmp_path / "data", per_class=(6, 6, 1), size=8)
    report = train("inception_cifar", "cifar", str(data), epochs=1, batch_size=4, device="cpu", quiet=True,
                   img_size=8, out=str(tmp_path / "run"))
    assert report["epochs_run"] == 1
    assert "class class2 has a single image: kept in train" in (tmp_path / "run" / "log.txt").read_text()


def test_a_budget_too_short_for_one_epoch_stops_before_training(tmp_path, capsys, one_thread):
    data = make_image_folder(tmp_path / "data", per_class=40, size=16)
    out = tmp_path / "run"
    # GoogLeNet-BN at 128 px: an epoch of 96 images takes seconds (small images at the CIFAR model's size train
    # from memory in well under one).
    assert main(["train", "--data", str(data), "--model", "googlenet_bn", "--img-size", "128", "--budget", "1s",
                 "--device", "cpu", "--out", str(out)]) == 2
    assert "too short for one epoch" in one_error_line(capsys)
    assert not (out / "last.pt").exists() and not (out / "metrics.csv").read_text().strip()


def test_a_budget_that_holds_a_few_epochs_plans_a_partial_last_one(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("inceptionnet.engine.budget.time.time", lambda: now[0])
    plan = BudgetPlan(budget_s=100.0, started=now[0])
    assert plan.epochs_for(0, 38.0, 38.0) == pytest.approx(2.61)  # 99 s of epochs (1 % kept for the report)
    assert plan.epochs_for(0, 33.0, 33.0) == 3  # within 0.05 of a whole count: whole
    # 40 s epochs of which 30 s train: two whole epochs (80 s), then 0.3 of the training (9 s) and the
    # partial epoch's validation and checkpoint in full (10 s) make the 99 s.
    assert plan.epochs_for(0, 40.0, 30.0) == pytest.approx(2.3)
    now[0] += 40.0
    assert plan.epochs_for(1, 38.0, 38.0) == pytest.approx(2.55)
    assert [batches_in_epoch(e, 2.64, 10) for e in range(3)] == [10, 10, 6]
    assert batches_in_epoch(0, 0.01, 10) == 1 and batches_in_epoch(3, 4, 10) == 10


@pytest.mark.slow
@pytest.mark.parametrize("per_class,size,budget", [(24, 8, 20.0), (48, 64, 15.0)],
                         ids=["many-epochs", "epochs-of-a-third-of-the-budget"])
def test_a_short_budget_ends_within_5_percent_with_the_schedule_completed(tmp_path, one_thread, per_class, size,
                                                                           budget):
    data = make_image_folder(tmp_path / "data", per_class=per_class, size=size, ext="jpg")
    report = train("inception_cifar", data=str(data), device="cpu", quiet=True, out=str(tmp_path / "run"),
                   budget=f"{budget:g}s", img_size=size)
    assert abs(report["wall_time_s"] - budget) <= 0.05 * budget, report["wall_time_s"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    assert report["epochs_run"] >= 2 and len(rows) - 1 == report["epochs_run"]
    # The cosine ran to its end: the last epoch's lr is the schedule's floor, not a cut-off mid-way value.
    last_lr = float(rows[-1].split(",")[rows[0].split(",").index("lr")])
    assert last_lr <= 0.05 * config["lr"] and math.ceil(config["recipe"]["epochs"]) == report["epochs_run"]
    assert config["recipe"]["warmup_epochs"] <= 0.2 * config["recipe"]["epochs"]
