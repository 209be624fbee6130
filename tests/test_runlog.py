"""The run folder: a fake 3-epoch run writes every file, readable by the tools that consume them."""

import csv
import io
import json

import pytest
from PIL import Image

from inceptionnet.analysis.plots import plot_confusion, plot_curves
from inceptionnet.engine import runlog
from inceptionnet.engine.runlog import RunLogger, format_epoch_line

EPOCHS = [
    {"train_acc": 0.50, "train_loss": 1.40, "val_acc": 0.55, "val_loss": 1.30, "lr": 1e-3, "time": 10.0,
     "data_time": 1.0, "images_per_s": 120.0},
    {"train_acc": 0.70, "train_loss": 0.90, "val_acc": 0.80, "val_loss": 0.70, "lr": 5e-4, "time": 9.5,
     "data_time": 0.8, "images_per_s": 130.0},
    {"train_acc": 0.80, "train_loss": 0.60, "val_acc": 0.75, "val_loss": 0.72, "lr": 1e-4, "time": 9.0,
     "data_time": 0.7, "images_per_s": 140.0},
]
SKIPPED = [("data/cat/broken.jpg", "truncated JPEG"), ("data/dog/empty.png", "zero-byte file")]


def fake_run(run_dir, quiet, stdout=None):
    with RunLogger(run_dir, quiet=quiet, stdout=stdout) as log:
        log.save_config({"model": "googlenet", "epochs": 3, "batch_size": 8, "data": run_dir})
        log.log("training googlenet on 3 classes")
        for epoch, metrics in enumerate(EPOCHS, 1):
            for step, _ in enumerate(log.progress(range(4), total=4, desc=f"epoch {epoch}")):
                log.scalars((epoch - 1) * 4 + step, {"train_loss_step": 1.0 / (step + 1)})
            log.log_epoch(epoch, len(EPOCHS), metrics)
        return log.write_report({"throughput_images_per_s": 130.0, "timings": {"train_s": 28.5}}, skipped=SKIPPED)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    out = io.StringIO()
    report = fake_run(run_dir, quiet=False, stdout=out)
    return run_dir, out.getvalue(), report


def test_epoch_line_matches_the_seed_format():
    line = format_epoch_line(3, 10, {"train_acc": 0.81, "train_loss": 0.929, "val_acc": 0.844, "val_loss": 0.898,
                                     "lr": 1e-4, "time": 12.34, "data_time": 1.1})
    assert line == ("Epoch: 3/10  train_acc 81.0%  train_loss 0.929  val_acc 84.4%  val_loss 0.898  lr 1.00E-04  "
                    "time 12.3s (data 1.1s)")
    assert format_epoch_line(1, 2, {"train_loss": 2.0}) == "Epoch: 1/2  train_loss 2.000"


def test_every_file_is_written(run):
    run_dir, _, _ = run
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.csv", "curves.png", "report.json", "log.txt"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert not [n for n in names if n.endswith(".tmp")], "atomic writes left temporary files"


def test_metrics_csv_has_a_header_and_one_row_per_epoch(run):
    run_dir, _, _ = run
    with open(run_dir / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[:8] == ["epoch", "train_acc", "train_loss", "val_acc", "val_loss", "lr", "time",
                                     "data_time"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, expected in zip(rows, EPOCHS, strict=True):
        for key, value in expected.items():
            assert float(row[key]) == pytest.approx(value)


def test_report_and_config(run):
    run_dir, _, returned = run
    report = json.loads((run_dir / "report.json").read_text())
    assert report == json.loads(json.dumps(returned))
    assert report["best_epoch"] == 2 and report["best_val_acc"] == pytest.approx(0.80)
    assert report["final_val_acc"] == pytest.approx(0.75)
    assert report["final_train_acc"] == pytest.approx(0.80)
    assert report["skipped_count"] == 2
    assert [s["path"] for s in report["skipped"]] == [p for p, _ in SKIPPED]
    assert report["throughput_images_per_s"] == 130.0 and report["timings"] == {"train_s": 28.5}
    assert report["wall_time_s"] >= 0
    assert report["epoch_time_s"] == pytest.approx(28.5) and report["data_time_s"] == pytest.approx(2.5)
    assert report["images_per_s_mean"] == pytest.approx(130.0)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "googlenet" and config["data"] == str(run_dir)


def test_curves_png_decodes(run):
    run_dir, _, _ = run
    with Image.open(run_dir / "curves.png") as im:
        im.load()
        assert im.format == "PNG" and im.width > 300 and im.height > 100


def test_tensorboard_events_are_readable(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _, _ = run
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/acc", "train/loss", "val/acc", "val/loss", "lr", "time", "train/loss_step"} <= tags
    assert [e.value for e in acc.Scalars("val/acc")] == pytest.approx([m["val_acc"] for m in EPOCHS])
    assert [e.step for e in acc.Scalars("val/acc")] == [1, 2, 3]
    assert len(acc.Scalars("train/loss_step")) == 12


def test_log_txt_has_every_printed_line(run):
    run_dir, printed, _ = run
    log_lines = (run_dir / "log.txt").read_text().splitlines()
    assert log_lines == printed.splitlines()
    epoch_lines = [line for line in log_lines if line.startswith("Epoch: ")]
    assert len(epoch_lines) == 3
    assert epoch_lines[1].startswith("Epoch: 2/3  train_acc 70.0%  train_loss 0.900  val_acc 80.0%")


def test_quiet_prints_nothing_but_writes_the_files(tmp_path, capsys):
    fake_run(tmp_path, quiet=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len([line for line in (tmp_path / "log.txt").read_text().splitlines() if line.startswith("Epoch")]) == 3
    assert (tmp_path / "report.json").is_file()


def test_other_ranks_write_and_print_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with RunLogger(run_dir, is_main=False) as log:
        log.save_config({"a": 1})
        log.log("hello")
        line = log.log_epoch(1, 1, EPOCHS[0])
        log.write_report({}, skipped=SKIPPED)
    assert line.startswith("Epoch: 1/1")
    assert not run_dir.exists()
    assert capsys.readouterr().out == ""


def test_resume_keeps_earlier_rows_and_drops_later_ones(tmp_path):
    with RunLogger(tmp_path, quiet=True) as log:
        for epoch, metrics in enumerate(EPOCHS, 1):
            log.log_epoch(epoch, 3, metrics)
    # The checkpoint of epoch 2 is resumed: the row of epoch 3 (not in that checkpoint) goes.
    with RunLogger(tmp_path, quiet=True, resume_epoch=2) as log:
        assert [r["epoch"] for r in log.rows] == [1, 2]
        log.log_epoch(3, 3, {**EPOCHS[2], "val_acc": 0.9})
        report = log.write_report()
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[2]["val_acc"]) == pytest.approx(0.9)
    assert report["best_epoch"] == 3


def test_a_metric_appearing_later_widens_the_header(tmp_path):
    with RunLogger(tmp_path, quiet=True) as log:
        log.log_epoch(1, 2, {"train_loss": 1.0})
        log.log_epoch(2, 2, {"train_loss": 0.5, "val_acc": 0.5})
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"epoch": "1", "train_loss": "1.0", "val_acc": ""},
                    {"epoch": "2", "train_loss": "0.5", "val_acc": "0.5"}]


def test_plot_confusion_decodes_and_checks_shape(tmp_path):
    path = plot_confusion([[5, 1, 0], [2, 3, 1], [0, 0, 6]], ["cat", "dog", "bird"], tmp_path / "confusion.png")
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
    with pytest.raises(ValueError, match="does not match 2 class names"):
        plot_confusion([[1, 0, 0], [0, 1, 0], [0, 0, 1]], ["a", "b"], tmp_path / "bad.png")


def test_plot_curves_without_validation(tmp_path):
    path = plot_curves([{"epoch": 1, "train_acc": 0.1, "train_loss": 2.0}, {"epoch": 2, "train_acc": 0.3,
                                                                          "train_loss": 1.5}], tmp_path / "c.png")
    with Image.open(path) as im:
        assert im.format == "PNG"


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stdout, quiet, shown", [(Terminal(), False, True), (Terminal(), True, False),
                                                  (io.StringIO(), False, False)], ids=["tty", "quiet", "pipe"])
def test_progress_bar_only_on_a_terminal(tmp_path, stdout, quiet, shown):
    with RunLogger(tmp_path, quiet=quiet, stdout=stdout) as log:
        bar = log.progress(range(3), total=3, desc="epoch 1/1")
        assert list(bar) == [0, 1, 2]
        bar.set_postfix(loss="0.5")
        bar.close()
    assert ("epoch 1/1" in stdout.getvalue()) == shown


def test_confusion_of_many_classes(tmp_path):
    import numpy as np

    path = plot_confusion(np.eye(100, dtype=int) * 3, [f"c{i}" for i in range(100)], tmp_path / "big.png")
    with Image.open(path) as im:
        assert im.format == "PNG"


def test_curves_are_redrawn_at_most_every_refresh_period_and_at_the_end(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(runlog, "plot_curves", lambda rows, path: drawn.append(len(rows)))
    log = RunLogger(tmp_path, quiet=True)
    for epoch in (1, 2, 3):
        log.log_epoch(epoch, 3, {"train_acc": 0.5, "train_loss": 1.0})
    assert drawn == [1], "a fast run redraws right after its first epoch, then waits for the refresh period"
    monkeypatch.setattr(log, "_curves_drawn_at", log._curves_drawn_at - runlog.CURVES_REFRESH_S)
    log.log_epoch(4, 5, {"train_acc": 0.6, "train_loss": 0.9})
    assert drawn == [1, 4]
    log.log_epoch(5, 5, {"train_acc": 0.7, "train_loss": 0.8})
    log.write_report()
    log.close()
    assert drawn == [1, 4, 5], "the report draws the final curves"
