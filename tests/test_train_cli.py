"""`inceptionnet train` and `demo` end to end: bad inputs give one line and exit code 2, unreadable files are
skipped and counted (fatal with --strict), non-finite losses are skipped, the run folder is complete."""

import json
import os
from pathlib import Path

import pytest
import torch

from image_folders import make_image_folder
from inceptionnet import train
from inceptionnet.cli import main
from inceptionnet.engine.checkpoint import load_checkpoint
from inceptionnet.engine.losses import AuxLoss
from inceptionnet.errors import TrainingError


def tiny_run(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", "inception_cifar", "--recipe", "cifar", "--data", str(data), "--epochs", "1",
            "--batch-size", "8", "--device", "cpu", "--quiet", "--out", str(out), *extra]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("inceptionnet train: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_missing_data_path_is_one_line(tmp_path, capsys):
    assert main(tiny_run(tmp_path / "nowhere", tmp_path / "run")) == 2
    assert "nowhere" in one_error_line(capsys)


def test_empty_class_folder_is_one_line(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    (data / "empty_class").mkdir()
    assert main(tiny_run(data, tmp_path / "run")) == 2
    assert "empty_class" in one_error_line(capsys)


def test_too_few_images_for_the_split_is_one_line(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=1)
    assert main(tiny_run(data, tmp_path / "run")) == 2
    one_error_line(capsys)


@pytest.mark.parametrize("extra,match", [
    (["--epochs", "0"], "epochs must be positive"),
    (["--set", "no_such_field=1"], "no_such_field"),
    (["--set", "lr=fast"], "lr=fast"),
    (["--recipe", "nope"], "unknown recipe"),
    (["--model", "nope"], "unknown model"),
    (["--img-size", "2"], "minimum input size"),
    (["--batch-size", "1000"], "fewer than one batch"),
])
def test_bad_options_are_one_line(tmp_path, capsys, extra, match):
    data = make_image_folder(tmp_path / "data")
    assert main(tiny_run(data, tmp_path / "run") + extra) == 2
    assert match in one_error_line(capsys)


def test_resume_of_a_folder_without_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no last.pt" in one_error_line(capsys)


def test_a_folder_holding_a_run_is_not_overwritten(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"a previous run's checkpoint")
    assert main(tiny_run(data, run)) == 2
    assert "--resume" in one_error_line(capsys)
    assert (run / "last.pt").read_bytes() == b"a previous run's checkpoint"


def test_the_demo_moves_its_previous_run_aside(tmp_path):
    from inceptionnet.commands.demo import keep_previous_run

    runs = tmp_path / "runs"
    kept = []
    for attempt in range(2):
        (runs / "demo").mkdir(parents=True)
        (runs / "demo" / "last.pt").write_text(f"run {attempt}")
        os.utime(runs / "demo", (1_700_000_000, 1_700_000_000))  # both runs ended in the same second
        kept.append(keep_previous_run(runs / "demo"))
    assert not (runs / "demo").exists()
    assert kept[1] == kept[0].with_name(kept[0].name + "-2")
    assert [(k / "last.pt").read_text() for k in kept] == ["run 0", "run 1"]


def add_bad_files(data: Path) -> set[str]:
    (data / "class0" / "empty.jpg").write_bytes(b"")
    (data / "class1" / "not_an_image.png").write_text("plain text, not pixels")
    good = (data / "class2" / "0.png").read_bytes()
    (data / "class2" / "cut.png").write_bytes(good[: len(good) // 2])
    (data / "class2" / "notes.txt").write_text("not an image by its name")
    return {"empty.jpg", "not_an_image.png", "cut.png", "notes.txt"}


@pytest.mark.slow
def test_unreadable_files_are_skipped_counted_and_fatal_with_strict(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    bad = add_bad_files(data)
    # val split 0.5 so that every bad file is read in the one epoch, whichever split it lands in
    assert main(tiny_run(data, tmp_path / "run", "--val-split", "0.5")) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert {Path(s["path"]).name for s in report["skipped"]} == bad
    assert report["skipped_count"] == len(bad)
    capsys.readouterr()
    assert main(tiny_run(data, tmp_path / "strict", "--strict", "--set", "val_split=0.5")) == 2
    line = one_error_line(capsys)
    assert any(name in line for name in bad)


@pytest.mark.slow
def test_a_file_that_fails_in_a_loader_worker_is_reported_once_and_ends_a_strict_run(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    good = (data / "class2" / "0.png").read_bytes()
    (data / "class2" / "cut.png").write_bytes(good[: len(good) // 2])
    assert main(tiny_run(data, tmp_path / "run", "--val-split", "0.5", "--workers", "2")) == 0
    assert capsys.readouterr().err.count("cut.png") == 1
    assert (tmp_path / "run" / "log.txt").read_text().count("cut.png") == 1
    assert main(tiny_run(data, tmp_path / "strict", "--strict", "--val-split", "0.5", "--workers", "2")) == 2
    assert "cut.png" in one_error_line(capsys)


@pytest.mark.slow
def test_run_folder_config_and_checkpoint_contents(tmp_path):
    data = make_image_folder(tmp_path / "data")
    report = train("inception_cifar", "cifar", str(data), epochs=2, batch_size=8, device="cpu", quiet=True,
                   out=str(tmp_path / "run"), overrides={"ema_decay": "0.9", "label_smoothing": 0.2}, seed=3)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.csv", "curves.png", "report.json", "log.txt", "last.pt", "best.pt"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["name"] == "cifar" and config["recipe"]["ema_decay"] == 0.9
    assert config["recipe"]["label_smoothing"] == 0.2 and config["options"]["seed"] == 3
    assert report["epochs_run"] == 2 and 0.0 <= report["best_val_acc"] <= 1.0
    ckpt = load_checkpoint(run / "last.pt")
    assert (ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]) == (2, 0, report["steps"])
    assert ckpt["class_names"] == ["class0", "class1", "class2"] and ckpt["ema"] is not None
    assert set(ckpt["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert ckpt["model_kwargs"]["num_classes"] == 3


def test_non_finite_losses_are_skipped_then_abort(tmp_path, monkeypatch):
    data = make_image_folder(tmp_path / "data")
    real_forward = AuxLoss.forward
    calls = []

    def nan_on_second_call(self, logits, aux, targets):
        total, main_loss = real_forward(self, logits, aux, targets)
        calls.append(1)
        return (total * float("nan"), main_loss) if len(calls) == 2 else (total, main_loss)

    monkeypatch.setattr(AuxLoss, "forward", nan_on_second_call)
    report = train("inception_cifar", "cifar", str(data), epochs=1, batch_size=4, device="cpu", quiet=True,
                   out=str(tmp_path / "run"))
    assert report["nonfinite_skipped"] == 1 and report["steps"] == report["batches_per_epoch"] - 1
    assert all(torch.isfinite(t).all() for t in load_checkpoint(tmp_path / "run" / "last.pt")["model"].values())

    monkeypatch.setattr(AuxLoss, "forward", lambda self, logits, aux, targets: (logits.sum() * float("inf"),) * 2)
    with pytest.raises(TrainingError, match="non-finite for 3 batches in a row"):
        train("inception_cifar", "cifar", str(data), epochs=1, batch_size=4, device="cpu", quiet=True,
              out=str(tmp_path / "run2"), overrides={"max_nonfinite": 3})


@pytest.mark.slow
def test_short_demo_writes_its_run_folder(tmp_path, capsys):
    from inceptionnet.artifacts import load_model
    from inceptionnet.recipes import get_recipe

    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "best.pt") in printed
    for name in ("best.pt", "curves.png", "report.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["epochs_run"] == 1 and 0.0 <= report["best_val_acc"] <= 1.0
    loaded = load_model(out / "best.pt")
    size = get_recipe("demo").img_size
    assert len(loaded.class_names) == 10 and loaded.preprocess.input_size == size
    assert loaded.model(torch.zeros(2, 3, size, size)).shape == (2, 10)


@pytest.mark.slow
def test_finetune_loads_the_body_and_gives_a_new_head(tmp_path):
    from inceptionnet import create_model, save_weights

    source = create_model("inception_cifar", num_classes=10)
    save_weights(source, tmp_path / "pretrained.safetensors")
    data = make_image_folder(tmp_path / "data")
    train("inception_cifar", "finetune", str(data), epochs=1, batch_size=8, device="cpu", quiet=True, lr=1e-9,
          img_size=32, out=str(tmp_path / "run"), weights=str(tmp_path / "pretrained.safetensors"),
          overrides={"ema_decay": 0})
    tuned = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    original = source.state_dict()
    head_keys = {k for k in tuned if k.startswith(tuple(n + "." for n in source.classifier_names))}
    assert head_keys and all(tuned[k].shape[0] == 3 for k in head_keys if k.endswith("weight"))
    body = [k for k in tuned if k not in head_keys and tuned[k].is_floating_point() and "running" not in k]
    assert body and all(torch.allclose(tuned[k], original[k], atol=1e-6) for k in body)
