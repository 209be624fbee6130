"""How often a run validates and checkpoints (engine/cadence.py), and what a run folder shows of it."""

import csv

import pytest

from image_folders import make_image_folder
from inceptionnet.engine import cadence as cadence_module
from inceptionnet.engine.cadence import VAL_SHARE, VALIDATE_LAST, Cadence


def test_auto_validates_the_first_epoch_then_as_often_as_its_share_allows_and_the_last_ones():
    cadence = Cadence()
    assert cadence.validate_now(1, 40)
    cadence.validated(1, val_seconds=0.2, train_seconds=1.0)  # a pass costing a fifth of an epoch
    assert cadence.interval == 10 and 0.2 / cadence.interval <= VAL_SHARE < 0.2 / (cadence.interval - 1)
    assert [e for e in range(2, 21) if cadence.validate_now(e, 40)] == list(range(11, 21))  # never validated since
    cadence.validated(11, val_seconds=0.2, train_seconds=1.0)
    due = [e for e in range(12, 41) if cadence.validate_now(e, 40)]
    assert due[0] == 21 and due[-VALIDATE_LAST:] == list(range(41 - VALIDATE_LAST, 41))
    cheap = Cadence()
    cheap.validated(1, val_seconds=0.001, train_seconds=1.0)
    assert cheap.interval == 1 and cheap.validate_now(2, 10)


def test_val_every_is_kept_as_given():
    cadence = Cadence(val_every=3)
    cadence.validated(3, val_seconds=10.0, train_seconds=1.0)
    assert [e for e in range(4, 8) if cadence.validate_now(e, 7)] == [6, 7]


def test_checkpoint_at_the_end_and_when_the_last_is_old(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(cadence_module.time, "monotonic", lambda: now[0])
    cadence = Cadence(checkpoint_every_s=60.0)
    assert not cadence.checkpoint_now(final=False) and cadence.checkpoint_now(final=True)
    now[0] += 60.0
    assert cadence.checkpoint_now(final=False)
    cadence.saved()
    assert not cadence.checkpoint_now(final=False)


def test_state_round_trips():
    cadence = Cadence()
    cadence.validated(2, 1.0, 1.0)
    other = Cadence()
    other.load_state_dict(cadence.state_dict())
    assert (other.interval, other.last_val_epoch) == (cadence.interval, cadence.last_val_epoch)


@pytest.mark.slow
def test_a_run_validates_on_its_cadence_and_reports_the_time_outside_steps(tmp_path):
    from inceptionnet import train

    data = make_image_folder(tmp_path / "data", per_class=4)
    report = train("inception_cifar", data=str(data), epochs=3, batch_size=4, out=str(tmp_path / "run"), quiet=True,
                   device="cpu", overrides={"val_every": "2"})
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [bool(r["val_acc"]) for r in rows] == [False, True, True]
    assert report["best_epoch"] in (2, 3)
    assert 0 < report["steps_time_s"] < report["wall_time_s"]
    # Both times are reported to the millisecond: on a run this short that alone moves their ratio by up to
    # 1 ms / wall time.
    assert report["outside_steps_fraction"] == pytest.approx(1 - report["steps_time_s"] / report["wall_time_s"],
                                                             abs=1e-4 + 1e-3 / report["wall_time_s"])
    # One field per fact: the wall time and the best validation top-1 are each given once.
    assert not {"train_wall_time_s", "best_val_top1"} & set(report) and "best_val_acc" in report
