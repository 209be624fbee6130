"""Checkpoints under SIGKILL: the atomic write keeps the old last.pt, and a run killed mid-epoch and resumed
ends with the same weights, bit for bit, as the same run left alone. Under SIGTERM or Ctrl-C a run stops after
the step in progress with last.pt written, and resumes to the same end."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from image_folders import make_image_folder
from inceptionnet.engine.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow


def train_command(data: Path, out: Path, *extra: str, epochs: int = 2) -> list[str]:
    return [sys.executable, "-m", "inceptionnet", "train", "--model", "inception_cifar", "--recipe", "cifar",
            "--data", str(data), "--val-split", "0.2", "--epochs", str(epochs), "--batch-size", "8", "--device",
            "cpu", "--deterministic", "--seed", "7", "--quiet", "--out", str(out),
            "--set", "warmup_epochs=0.5", "--set", "ema_decay=0.9", *extra]


def run_to_end(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def assert_same_training_state(whole: dict, resumed: dict) -> None:
    assert resumed["step"] == whole["step"]
    for key in ("model", "ema"):
        assert whole[key].keys() == resumed[key].keys()
        for name, tensor in whole[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name} differs after resume"
    assert whole["optimizer"]["state"].keys() == resumed["optimizer"]["state"].keys()
    for index, state in whole["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], resumed["optimizer"]["state"][index]["momentum_buffer"])


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=10)
    run_to_end(train_command(data, tmp_path / "whole"))

    killed = tmp_path / "killed"
    child = subprocess.Popen(train_command(data, killed, "--save-every-steps", "1"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (killed / "last.pt").exists():  # the first step checkpoint: epoch 1, batch 1 of 3
        assert child.poll() is None, child.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    stopped = load_checkpoint(killed / "last.pt")
    assert stopped["batch_in_epoch"] > 0, "the kill should land mid-epoch"
    assert stopped["step"] < 6

    run_to_end([sys.executable, "-m", "inceptionnet", "train", "--resume", str(killed), "--quiet"])
    whole, resumed = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(killed / "last.pt")
    assert whole["step"] == 6
    assert_same_training_state(whole, resumed)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_with_last_pt_written_and_resume_ends_the_same(tmp_path, signum):
    data = make_image_folder(tmp_path / "data", per_class=10)
    run_to_end(train_command(data, tmp_path / "whole", epochs=5))

    stopped_dir = tmp_path / "stopped"
    child = subprocess.Popen(train_command(data, stopped_dir, epochs=5), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while size(stopped_dir / "metrics.csv") == 0:  # epoch 1's row is in: the run is in its epoch loop
        assert child.poll() is None, child.stderr.read()
        assert time.time() < deadline
        time.sleep(0.005)
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    message = stderr.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(signum).name} at epoch" in message
    assert f"last.pt saved; continue with --resume {stopped_dir}" in message
    stopped = load_checkpoint(stopped_dir / "last.pt")
    assert 3 < stopped["step"] < 15  # after epoch 1 (3 steps), before the end (5 epochs x 3 steps)
    assert f"epoch {stopped['epoch'] + 1}, batch {stopped['batch_in_epoch']}:" in message

    run_to_end([sys.executable, "-m", "inceptionnet", "train", "--resume", str(stopped_dir), "--quiet"])
    whole, resumed = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(stopped_dir / "last.pt")
    assert whole["step"] == 15
    assert_same_training_state(whole, resumed)


def size(path: Path) -> int:
    """Size of `path`, 0 when it was renamed or removed meanwhile."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# The model metadata every checkpoint carries (the weights here are no model's: only the file is under test).
META = {"model_name": "inception_cifar", "model_kwargs": {"num_classes": 2}, "class_names": ["a", "b"],
        "preprocess": {}}


def test_checkpoint_write_killed_midway_leaves_the_old_file_loadable(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {**META, "model": {"w": torch.arange(4.0)}, "step": 1})
    writer = textwrap.dedent(f"""
        import torch
        from inceptionnet.engine.checkpoint import save_checkpoint
        big = {{**{META!r}, "model": {{"w": torch.ones(60_000_000)}}, "step": 2}}  # 240 MB: slow enough to interrupt
        while True:
            save_checkpoint({str(path)!r}, big)
    """)
    child = subprocess.Popen([sys.executable, "-c", writer])
    deadline = time.time() + 120
    while not any(size(p) > 0 for p in tmp_path.glob(".last.pt.*.tmp")):
        assert child.poll() is None and time.time() < deadline
        time.sleep(0.002)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    ckpt = load_checkpoint(path)
    assert ckpt["step"] in (1, 2)
    expected = torch.arange(4.0) if ckpt["step"] == 1 else torch.ones(60_000_000)
    assert torch.equal(ckpt["model"]["w"], expected)
