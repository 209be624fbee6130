"""Accuracy against training time of CIFAR runs, as a PNG and a Markdown table, from their metrics.csv.

Run by hand:  PYTHONPATH=src .venv/bin/python bench/cifar_curve.py RUN_FOLDER [RUN_FOLDER ...] [--out PNG]

For each run folder: validation top-1 (the test split for CIFAR-10, whose validation is its test set) after
validated epoch against the cumulative training time (data + compute, evaluation excluded). The PNG goes to
--out, by default accuracy_vs_time.png in the first run folder. The table row of a run lists the top-1 after
each validated epoch ("epoch: top-1" when the run skipped some), the total training time, the median images/s
over its epochs and the training time at which it first reached --target. Runs of the same model and recipe
(different seeds) are summarised after the table: the mean, standard deviation and range of their final top-1.
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


def read_run(folder: Path) -> tuple[str, int, list[dict[str, float]]]:
    """(label "model / recipe", seed, metrics rows as floats) of a run folder."""
    config = json.loads((folder / "config.json").read_text())
    with open(folder / "metrics.csv", newline="") as f:
        rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    return f"{config['model']} / {config['recipe']['name']}", config["options"]["seed"], rows


def summarise_seeds(finals: dict[str, list[float]]) -> list[str]:
    """One line per label run with several seeds: mean, standard deviation and range of the final top-1 (%)."""
    return [f"{label}: final top-1 over {len(accs)} seeds {statistics.mean(accs):.2f} "
            f"± {statistics.stdev(accs):.2f} (min {min(accs):.2f}, max {max(accs):.2f})"
            for label, accs in finals.items() if len(accs) > 1]


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
    finals: dict[str, list[float]] = {}
    for folder in args.runs:
        label, seed, rows = read_run(folder)
        minutes = [t / 60 for t in accumulate(row["time"] for row in rows)]
        # Runs validate on a cadence (engine/cadence.py): the curve has a point for each validated epoch.
        points = [(m, 100 * row["val_acc"], int(row["epoch"])) for m, row in zip(minutes, rows, strict=True)
                  if "val_acc" in row]
        ax.plot([m for m, _, _ in points], [a for _, a, _ in points], marker="o", label=f"{label}, seed {seed}")
        finals.setdefault(label, []).append(points[-1][1])
        speed = statistics.median(row["images_per_s"] for row in rows)
        accs = ", ".join(f"{a:.2f}" if len(points) == len(rows) else f"{e}: {a:.2f}" for _, a, e in points)
        reached = next((f"{m:.1f} min (epoch {e})" for m, a, e in points if a >= args.target), "not reached")
        print(f"| {label}, seed {seed} | {accs} | {minutes[-1]:.1f} min | {speed:.0f} | {reached} |")
    for line in summarise_seeds(finals):
        print(line)
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
