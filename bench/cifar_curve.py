"""Accuracy against training time of CIFAR runs, as a PNG and a Markdown table, from their metrics.csv.

Run by hand:  PYTHONPATH=src .venv/bin/python bench/cifar_curve.py RUN_FOLDER [RUN_FOLDER ...] [--out PNG]

For each run folder: validation top-1 (the test split for CIFAR-10, whose validation is its test set) after
validated epoch against the cumulative training time (data + compute, evaluation excluded). The PNG goes to
--out, by default accuracy_vs_time.png in the first run folder. The table row of a run lists the top-1 after
each validated epoch ("epoch: top-1" when the run skipped some), the total training time, the median images/s
over its epochs and the training time at which it first reached --target.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from itertools import accumulate
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inceptionnet.fileio import atomic_write


def read_run(folder: Path) -> tuple[str, list[dict[str, float]]]:
    """(label "model / recipe", metrics rows as floats) of a run folder."""
    config = json.loads((folder / "config.json").read_text())
    with open(folder / "metrics.csv", newline="") as f:
        rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    return f"{config['model']} / {config['recipe']['name']}", rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--target", type=float, default=93.0, help="report the training time to this top-1 (%%)")
    args = parser.parse_args()
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    print(f"| model / recipe | test top-1 after each validated epoch (%) | train time | images/s (median) "
          f"| first at {args.target:g} % |")
    print("|---|---|---|---|---|")
    for folder in args.runs:
        label, rows = read_run(folder)
        minutes = [t / 60 for t in accumulate(row["time"] for row in rows)]
        # Runs validate on a cadence (engine/cadence.py): the curve has a point for each validated epoch.
        points = [(m, 100 * row["val_acc"], int(row["epoch"])) for m, row in zip(minutes, rows, strict=True)
                  if "val_acc" in row]
        ax.plot([m for m, _, _ in points], [a for _, a, _ in points], marker="o", label=label)
        speed = statistics.median(row["images_per_s"] for row in rows)
        accs = ", ".join(f"{a:.2f}" if len(points) == len(rows) else f"{e}: {a:.2f}" for _, a, e in points)
        reached = next((f"{m:.1f} min (epoch {e})" for m, a, e in points if a >= args.target), "not reached")
        print(f"| {label} | {accs} | {minutes[-1]:.1f} min | {speed:.0f} | {reached} |")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    FigureCanvasAgg(fig)
    out = args.out or args.runs[0] / "accuracy_vs_time.png"
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
