"""`torchrun --nproc_per_node 2 -m inceptionnet train` on CPU (gloo): one run folder, validation over the
whole validation set, and a resumed 2-process run that equals an uninterrupted one."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

VAL_COUNTS = (3, 3, 1)  # 7 validation images: a padded split over 2 ranks would count 8
TRAIN_PER_CLASS = 8
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


def torchrun_train(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "inceptionnet", "train", *map(str, args)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def train_args(data, out, epochs):
    return ("--model", "inception_cifar", "--data", data, "--epochs", epochs, "--batch-size", 8, "--device", "cpu",
            "--out", out)


@pytest.fixture(scope="module")
def full_run(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, torchrun_train(*train_args(image_folder, out, 2))


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_two_processes_write_one_run_folder(full_run):
    out, proc = full_run
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if n.startswith("events.")] == [next(n for n in names if n.startswith("events."))]
    assert {"best.pt", "last.pt", "report.json", "metrics.csv", "config.json", "curves.png", "log.txt"} <= set(names)
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


def test_resume_under_two_processes_continues_from_the_saved_step(full_run, image_folder, tmp_path):
    uninterrupted, _ = full_run
    out = tmp_path / "run"
    torchrun_train(*train_args(image_folder, out, 1), "--quiet")
    first = torch.load(out / "last.pt", weights_only=True)
    assert (first["epoch"], first["step"], len(first["rng_per_rank"])) == (1, 3, 2)
    torchrun_train("--resume", out, "--epochs", 2)
    log = (out / "log.txt").read_text()
    assert "resumed from" in log and "epoch 2, batch 0, step 3" in log
    assert [int(r["epoch"]) for r in read_metrics(out)] == [1, 2]
    resumed = torch.load(out / "last.pt", weights_only=True)
    reference = torch.load(uninterrupted / "last.pt", weights_only=True)
    assert resumed["step"] == reference["step"] == 6
    for name, value in reference["model"].items():  # each rank continued its own data shard and RNG stream
        assert torch.allclose(resumed["model"][name].float(), value.float(), atol=1e-6), name
