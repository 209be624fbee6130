"""Learning figures on real folders: the `auto` recipe against the PyTorch ImageFolder tutorial's recipe.

    OMP_NUM_THREADS=2 .venv/bin/python bench/learning.py --sets signs,cifar --budget 5m \
        [--recipes auto,tutorial-adam] [--set img_size=64] [--tutorial-set img_size=96] [--out /tmp/learning]

Run by hand, never from the tests; needs the archives of /work/shared/datasets unpacked (see that README):
- signs: sign-language digits (Dataset/<digit>/*.JPG, 2,062 photos, 10 classes), the seeded 80/20 split
  of `inceptionnet train` (seed 0);
- cifar: a CIFAR-10 subset as a folder: the first 500 training and 100 test JPEGs of each class (5,000 /
  1,000 at 32 px), linked into <out>/cifar-subset/{train,val}/<class>/.
Every run goes through `inceptionnet train` in its own process, one after another on the same machine,
each with the same `--budget` (the tutorial recipe's 224 px x 40 epochs takes hours on 2 cores; capped by
the budget its epochs are cut to what fits, and it keeps its constant lr). `--set` and `--tutorial-set`
pass overrides to the auto runs and to the others. The table (recipe, final, best, last-5 mean, balanced
accuracy, wall time) is printed as Markdown with the CPU and load average, and saved as <out>/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import cpu_model

SIGNS = Path("/tmp/signs/Dataset")
CIFAR = Path("/tmp/cifar10")
CIFAR_PER_CLASS = {"train": 500, "val": 100}


def cifar_subset(out: Path) -> Path:
    """<out>/cifar-subset/{train,val}/<class>/ holding links to the first files of each class (sorted)."""
    root = out / "cifar-subset"
    for split, source in (("train", "train"), ("val", "test")):
        for folder in sorted((CIFAR / source).iterdir()):
            target = root / split / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(folder.iterdir())[: CIFAR_PER_CLASS[split]]:
                link = target / path.name
                if not link.exists():
                    link.symlink_to(path)
    return root


def run_one(data: Path, recipe: str, budget: str, overrides: list[str], run_dir: Path,
            extra: tuple[str, ...] = ()) -> dict:
    """Train `recipe` on `data` within `budget` in a child process (`extra`: more `train` options, such as
    --model or --weights); the report.json fields of the table."""
    command = [sys.executable, "-m", "inceptionnet", "train", "--data", str(data), "--recipe", recipe,
               "--budget", budget, "--device", "cpu", "--quiet", "--out", str(run_dir), *extra]
    if overrides:
        command += ["--set", *overrides]
    started = time.time()
    subprocess.run(command, check=True)
    wall = time.time() - started
    report = json.loads((run_dir / "report.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    return {"recipe": recipe, "model": config["model"], "img_size": config["img_size"],
            "epochs": report["epochs_run"], "final": report.get("final_val_acc"), "best": report.get("best_val_acc"),
            "last5": report.get("last5_val_acc_mean"), "bacc": report.get("final_val_bacc"), "wall_s": wall,
            "load": os.getloadavg()[0], "overrides": overrides}


def table(rows: list[dict]) -> str:
    """The Markdown table of `rows` (one a run)."""
    lines = ["| set | recipe | model, px | epochs | final | best | last-5 | bal. acc | wall s | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pct = {k: f"{100 * r[k]:.1f}" if r[k] is not None else "-" for k in ("final", "best", "last5", "bacc")}
        lines.append(f"| {r['set']} | {r['recipe']} {' '.join(r['overrides'])} | {r['model']}, {r['img_size']} | "
                     f"{r['epochs']} | {pct['final']} | {pct['best']} | {pct['last5']} | {pct['bacc']} | "
                     f"{r['wall_s']:.0f} | {r['load']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="signs,cifar")
    parser.add_argument("--recipes", default="auto,tutorial-adam")
    parser.add_argument("--budget", default="5m", help="wall-clock budget of every run")
    parser.add_argument("--set", dest="auto_set", nargs="*", default=[], help="overrides for the auto runs")
    parser.add_argument("--tutorial-set", nargs="*", default=[], help="overrides for the other recipes")
    parser.add_argument("--out", type=Path, default=Path("/tmp/learning"))
    args = parser.parse_args()
    data = {"signs": lambda: SIGNS, "cifar": lambda: cifar_subset(args.out)}
    rows = []
    for name in args.sets.split(","):
        for recipe in args.recipes.split(","):
            overrides = args.auto_set if recipe == "auto" else args.tutorial_set
            run_dir = args.out / f"{name}-{recipe}-{time.strftime('%H%M%S')}"
            rows.append({"set": name, **run_one(data[name](), recipe, args.budget, overrides, run_dir)})
            print(table(rows[-1:]), flush=True)
    print(f"\nCPU: {cpu_model()}, {os.cpu_count()} cores, shared with other jobs; budget {args.budget} a run\n")
    print(table(rows))
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
