"""What a training run shows and leaves behind: console lines, progress bars and the run folder.

A run folder holds `config.json`, `metrics.csv`, TensorBoard `events.*`, `curves.png`, `report.json` and
`log.txt` (checkpoints `last.pt`/`best.pt` are written by the engine). Only the main process (rank 0)
writes anything; on other ranks every method is a no-op, so the training loop calls them unconditionally.

Accuracies are fractions (0-1) in metrics.csv, report.json and TensorBoard, and percentages on screen.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from ..analysis.plots import plot_curves
from ..fileio import atomic_write, atomic_write_text

# Fixed leading columns of metrics.csv, in this order; other keys the engine passes follow, sorted.
# Drawing curves.png costs about half a second: a short epoch must not pay it every time.
CURVES_REFRESH_S = 30.0
# report.json's `last5_val_acc_mean` averages this many last epochs (a stable run keeps it near the best).
LAST_EPOCHS_MEAN = 5
CORE_COLUMNS = ("epoch", "train_acc", "train_loss", "val_acc", "val_loss", "lr", "time", "data_time")


def format_epoch_line(epoch: int, epochs: float, metrics: Mapping[str, Any]) -> str:
    """`Epoch: 3/10  train_acc 81.0%  train_loss 0.929  val_acc 84.4%  val_bacc 83.9%  val_loss 0.898  lr 1.00E-04
    time 12.3s (data 1.1s)`; parts whose value is missing are left out. `epoch` counts from 1; `epochs` ends in
    a fraction when a budget cut the last epoch short ("Epoch: 3/2.6")."""
    parts = [f"Epoch: {epoch}/{epochs:g}"]
    for key in ("train_acc", "train_loss", "val_acc", "val_bacc", "val_loss"):
        value = metrics.get(key)
        if value is not None:
            parts.append(f"{key} {100 * value:.1f}%" if key.endswith("acc") else f"{key} {value:.3f}")
    if metrics.get("lr") is not None:
        parts.append(f"lr {metrics['lr']:.2E}")
    if metrics.get("time") is not None:
        timing = f"time {metrics['time']:.1f}s"
        if metrics.get("data_time") is not None:
            timing += f" (data {metrics['data_time']:.1f}s)"
        parts.append(timing)
    return "  ".join(parts)


def _tag(key: str) -> str:
    """TensorBoard tag of a metric: `train_acc` -> `train/acc`, `val_top5` -> `val/top5`, `lr` -> `lr`."""
    split, _, rest = key.partition("_")
    return f"{split}/{rest}" if split in ("train", "val", "test") and rest else key


def _jsonable(value: Any) -> Any:
    """Make tensors, numpy numbers, paths and tuples JSON-friendly; non-finite floats become null."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write `data` as indented JSON to `path` atomically (tensors, paths and numpy values converted)."""
    return atomic_write_text(path, json.dumps(_jsonable(data), indent=2) + "\n")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


class RunLogger:
    """Console output and run-folder files of one training run.

    run_dir: the run folder (created on the main process). is_main: False on ranks other than 0, which
    then write and print nothing. quiet: print nothing to stdout (files are still written).
    resume_epoch: when resuming, keep the rows of an existing metrics.csv up to this epoch (counted from 1)
    and append after them; None starts a fresh metrics.csv.
    """

    def __init__(self, run_dir: str | os.PathLike, is_main: bool = True, quiet: bool = False,
                 resume_epoch: int | None = None, stdout: TextIO | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self.quiet = quiet or not is_main
        self._stdout = stdout
        self.rows: list[dict[str, Any]] = []
        self._columns: list[str] | None = None
        self._tb = None
        self._log_file: TextIO | None = None
        self.started = time.time()
        self._curves_drawn_at = -math.inf
        if not is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.run_dir / "log.txt", "a", encoding="utf-8")  # closed in close()
        metrics = self.run_dir / "metrics.csv"
        if resume_epoch is not None and metrics.is_file():
            self.rows = [r for r in _read_rows(metrics) if r.get("epoch") is not None and r["epoch"] <= resume_epoch]
            if self.rows:
                self._columns = list(self.rows[0])
        self._rewrite_metrics()

    # ---- console and log.txt -------------------------------------------------------------------------
    @property
    def stdout(self) -> TextIO:
        return self._stdout or sys.stdout

    def log(self, message: str) -> None:
        """Print `message` (unless quiet) and append it to log.txt, on the main process only."""
        if not self.is_main:
            return
        if not self.quiet:
            tqdm.write(message, file=self.stdout)  # keeps an active progress bar intact
        self._append_log(message)

    def warn(self, message: str) -> None:
        """Print `message` on stderr (even when quiet) and append it to log.txt, on the main process only."""
        if not self.is_main:
            return
        tqdm.write(f"warning: {message}", file=sys.stderr)
        self._append_log(f"warning: {message}")

    def _append_log(self, message: str) -> None:
        assert self._log_file is not None
        self._log_file.write(message + "\n")
        self._log_file.flush()

    def progress(self, iterable: Iterable, total: int | None = None, desc: str = "") -> tqdm:
        """Wrap `iterable` in a tqdm bar (one per epoch); silent when quiet, on other ranks, or when stdout
        is not a terminal. The returned bar takes `set_postfix(...)` either way."""
        enabled = not self.quiet and self.stdout.isatty()
        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=self.stdout,
                    disable=not enabled)

    # ---- run folder ----------------------------------------------------------------------------------
    def save_config(self, config: Mapping[str, Any]) -> None:
        """Write the run's configuration (recipe, options, model, data, world size...) to config.json."""
        if self.is_main:
            write_json(self.run_dir / "config.json", config)

    def log_epoch(self, epoch: int, epochs: float, metrics: Mapping[str, Any]) -> str:
        """Record one finished epoch (`epoch` counted from 1 of `epochs`).

        `metrics` holds floats keyed like CORE_COLUMNS (`train_acc`, `train_loss`, `val_acc`, `val_loss`, `lr`,
        `time`, `data_time` seconds) plus any extra numbers (e.g. `val_top5`, `images_per_s`). Prints the
        epoch line, appends a metrics.csv row (flushed), adds TensorBoard scalars and redraws curves.png
        (after the first epoch, then at most every CURVES_REFRESH_S seconds; `write_report` draws the final one).
        Returns the epoch line.
        """
        line = format_epoch_line(epoch, epochs, metrics)
        if not self.is_main:
            return line
        row = {"epoch": epoch, **{k: v for k, v in metrics.items() if k != "epoch"}}
        self.rows.append(row)
        self._append_metrics(row)
        self.scalars(epoch, {k: v for k, v in row.items() if k != "epoch"})
        if time.monotonic() - self._curves_drawn_at >= CURVES_REFRESH_S:
            self.draw_curves()
        self.log(line)
        return line

    def draw_curves(self) -> None:
        """Redraw curves.png from every epoch row so far (main process, once there is a row)."""
        if self.is_main and self.rows:
            plot_curves(self.rows, self.run_dir / "curves.png")
            self._curves_drawn_at = time.monotonic()

    def scalars(self, step: int, values: Mapping[str, Any]) -> None:
        """Add numeric `values` to TensorBoard at `step` (e.g. per-iteration loss or learning rate)."""
        if not self.is_main:
            return
        writer = self._writer()
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
                writer.add_scalar(_tag(key), value, step)
        writer.flush()

    def _writer(self):
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter  # imported late: it pulls in tensorboard

            self._tb = SummaryWriter(log_dir=str(self.run_dir))
        return self._tb

    def _append_metrics(self, row: dict[str, Any]) -> None:
        new_keys = [k for k in row if k not in (self._columns or [])]
        if self._columns is None or new_keys:
            # First row, or a metric appeared later (e.g. validation starts after warm-up): rewrite with
            # the wider header so every row stays aligned with it.
            self._columns = _columns([*(self._columns or []), *new_keys])
            self._rewrite_metrics()
            return
        with open(self.run_dir / "metrics.csv", "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self._columns).writerow(row)
            f.flush()

    def _rewrite_metrics(self) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                if self._columns:
                    writer = csv.DictWriter(f, self._columns)
                    writer.writeheader()
                    writer.writerows(self.rows)

        atomic_write(self.run_dir / "metrics.csv", write)

    def write_report(self, report: Mapping[str, Any] | None = None,
                     skipped: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """Write report.json: best epoch and validation accuracy, final accuracies, the mean validation accuracy
        of the last LAST_EPOCHS_MEAN epochs, balanced accuracies at the best and final epochs, the skipped files
        (list of (path, reason) and their count), summed epoch and data-loading times, mean throughput (from
        the rows' `images_per_s`), wall time since the logger started, and every key of `report` the engine
        passes (checkpoint paths, test metrics...; these win on a clash). Returns the report dict."""
        out: dict[str, Any] = {"epochs_run": len(self.rows)}
        scored = [r for r in self.rows if r.get("val_acc") is not None]
        if scored:
            best = max(scored, key=lambda r: r["val_acc"])
            last = scored[-LAST_EPOCHS_MEAN:]
            out.update(best_epoch=best["epoch"], best_val_acc=best["val_acc"], final_val_acc=scored[-1]["val_acc"],
                       last5_val_acc_mean=sum(r["val_acc"] for r in last) / len(last),
                       best_val_bacc=best.get("val_bacc"), final_val_bacc=scored[-1].get("val_bacc"))
        if self.rows:
            out["final_train_acc"] = self.rows[-1].get("train_acc")
        for key, total in (("time", "epoch_time_s"), ("data_time", "data_time_s")):
            values = [r[key] for r in self.rows if isinstance(r.get(key), (int, float))]
            if values:
                out[total] = round(sum(values), 3)
        speeds = [r["images_per_s"] for r in self.rows if isinstance(r.get("images_per_s"), (int, float))]
        if speeds:
            out["images_per_s_mean"] = sum(speeds) / len(speeds)
        out.update(skipped_count=len(skipped), skipped=[{"path": str(p), "reason": r} for p, r in skipped],
                   wall_time_s=round(time.time() - self.started, 3))
        out.update(report or {})
        if self.is_main:
            self.draw_curves()
            write_json(self.run_dir / "report.json", out)
        return out

    def close(self) -> None:
        """Flush and close TensorBoard and log.txt."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _columns(keys: Sequence[str]) -> list[str]:
    core = [k for k in CORE_COLUMNS if k in keys]
    return core + sorted(k for k in keys if k not in CORE_COLUMNS)
