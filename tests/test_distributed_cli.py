"""`torchrun --nproc_per_node 2 -m inceptionnet train` on CPU (gloo): one run folder, validation over the
whole validation set, and a 2-process run resumed mid-epoch that equals an uninterrupted one.

Run as a script (under torchrun) this file is the CLI with a spy that keeps a copy of the mid-epoch
checkpoint written at step MID_STEP, which the resume test continues from.
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionnet.engine.distributed import TrainSampler

VAL_COUNTS = (3, 3, 1)  # 7 validation images: a padded split over 2 ranks would count 8
TRAIN_PER_CLASS = 8  # 24 images, global batch 8: 3 steps per epoch
MID_STEP = 4  # epoch 2, after its first batch
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split, counts in (("train", (TRAIN_PER_CLASS,) * 3), ("val", VAL_COUNTS)):
        for label, n in enumerate(counts):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (rng.random((32, 32, 3)) * 80 + label * 80).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def torchrun_train(*args, script: str | None = None) -> subprocess.CompletedProcess:
    target = [script] if script else ["-m", "inceptionnet"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *target,
           "train", *map(str, args)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def full_run(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = torchrun_train("--model", "inception_cifar", "--recipe", "cifar", "--data", image_folder, "--epochs", 2,
                          "--batch-size", 8, "--device", "cpu", "--out", out, "--save-every-steps", MID_STEP,
                          script=__file__)
    return out, proc


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_two_processes_write_one_run_folder(full_run):
    out, proc = full_run
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if n.startswith("events.")] == [next(n for n in names if n.startswith("events."))]
    assert {"best.pt", "last.pt", "report.json", "metrics.csv", "config.json", "curves.png", "log.txt",
            "mid.pt"} <= set(names)
    assert not [n for n in names if n.endswith(".tmp")]
    assert proc.stdout.count("Epoch: 2/2") == 1, "only rank 0 prints"
    assert proc.stdout.count("best checkpoint:") == 1
    log = (out / "log.txt").read_text()
    assert "distributed: 2 processes on 1 node, backend gloo" in log
    assert "global batch 8 = 2 processes x 4" in log
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 2 * (3 * TRAIN_PER_CLASS // 8)
    assert json.loads((out / "config.json").read_text())["global_batch"] == 8


def test_validation_counts_every_image_once(full_run):
    out, _ = full_run
    rows = read_metrics(out)
    assert [int(r["val_images"]) for r in rows] == [sum(VAL_COUNTS)] * 2
    for row in rows:  # an accuracy over 7 images is a multiple of 1/7
        assert float(row["val_acc"]) * sum(VAL_COUNTS) == pytest.approx(round(float(row["val_acc"]) * 7))
    report = json.loads((out / "report.json").read_text())
    assert report["best_val_acc"] == pytest.approx(max(float(r["val_acc"]) for r in rows))


def test_resume_mid_epoch_under_two_processes_equals_the_uninterrupted_run(full_run, tmp_path):
    uninterrupted, _ = full_run
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (out / "mid.pt").replace(out / "last.pt")
    mid = torch.load(out / "last.pt", weights_only=True)
    assert (mid["epoch"], mid["batch_in_epoch"], mid["step"], len(mid["per_rank"])) == (1, 1, MID_STEP, 2)
    torchrun_train("--resume", out)
    log = (out / "log.txt").read_text()
    assert f"resumed from {out / 'last.pt'}: epoch 2, batch 1, step {MID_STEP}" in log
    assert [int(r["epoch"]) for r in read_metrics(out)] == [1, 2]
    resumed = torch.load(out / "last.pt", weights_only=True)
    reference = torch.load(uninterrupted / "last.pt", weights_only=True)
    assert resumed["step"] == reference["step"] == 6
    changed = [k for k, v in reference["model"].items() if not torch.equal(v, mid["model"][k])]
    assert changed, "the resumed run must have trained"
    for name, value in reference["model"].items():  # each rank continued its own data shard and RNG stream
        assert torch.allclose(resumed["model"][name].float(), value.float(), atol=1e-6), name
    for key in ("train_loss", "train_acc", "val_acc", "val_loss"):  # each rank kept its own epoch sums
        assert float(read_metrics(out)[1][key]) == pytest.approx(float(read_metrics(uninterrupted)[1][key]))


def test_a_batch_unreadable_on_one_rank_is_skipped_by_all(image_folder, tmp_path):
    """One rank image per step: the step holding the empty file leaves one rank with nothing to train on.
    Every rank must skip that step together (otherwise the other rank waits in DDP's all-reduce until the
    collective timeout), and report.json lists the file whichever rank met it."""
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    broken = data / "train" / "class0" / "broken.png"
    broken.write_bytes(b"")
    out = tmp_path / "run"
    torchrun_train("--model", "inception_cifar", "--recipe", "cifar", "--data", data, "--epochs", 1, "--batch-size", 2,
                   "--device", "cpu", "--out", out, "--quiet")
    report = json.loads((out / "report.json").read_text())
    assert report["skipped_count"] == 1 and report["skipped"][0]["path"] == str(broken)
    # The steps where either rank draws the broken file (index 8: after class0's 0.png..7.png), in the
    # order the engine's sampler uses with the default seed 0.
    shards = [list(TrainSampler(range(3 * TRAIN_PER_CLASS + 1), seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    empty_steps = {step for shard in shards for step, index in enumerate(shard) if index == TRAIN_PER_CLASS}
    assert empty_steps and report["steps"] == len(shards[0]) - len(empty_steps)


def keep_mid_epoch_checkpoint() -> None:
    """Spy on Trainer.save_last: rank 0 copies the checkpoint of step MID_STEP to mid.pt."""
    from inceptionnet.engine.train import Trainer

    save_last = Trainer.save_last

    def spy(self) -> None:
        save_last(self)
        if self.ctx.is_main and self.state.step == MID_STEP and self.state.batch_in_epoch:
            shutil.copyfile(self.run_dir / "last.pt", self.run_dir / "mid.pt")

    Trainer.save_last = spy


if __name__ == "__main__":
    from inceptionnet.cli import main

    keep_mid_epoch_checkpoint()
    sys.exit(main(sys.argv[1:]))
