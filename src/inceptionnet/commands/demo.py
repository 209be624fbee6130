"""`inceptionnet demo`: train GoogLeNet with its aux heads on the embedded synthetic set into runs/demo/."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .train import SHARED, add_training_options, training_kwargs

DEMO_MODEL = "googlenet_bn"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="train a small GoogLeNet on the embedded synthetic shapes (a few minutes)",
                       description=f"Train {DEMO_MODEL} with its auxiliary heads on the embedded synthetic set "
                                   "(generated on first use) with the `demo` recipe, into runs/demo/.")
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    add_training_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..train_api import train

    out = args.out
    if (Path(out) / "last.pt").exists():
        kept = keep_previous_run(Path(out))
        print(f"the previous demo run was moved to {kept}")
    report = train(model=DEMO_MODEL, recipe="demo", data=None, out=out, **training_kwargs(args, SHARED))
    accuracy = report.get("best_val_acc")
    print(f"\ndemo finished in {report['wall_time_s']:.0f}s: best validation accuracy "
          f"{100 * accuracy:.2f}%" if accuracy is not None else "demo finished")
    for name, what in (("best.pt", "best checkpoint (EMA weights)"), ("last.pt", "last checkpoint, for --resume"),
                       ("curves.png", "loss and accuracy curves"), ("report.json", "final report"),
                       ("metrics.csv", "per-epoch metrics"), ("log.txt", "the log"),
                       ("config.json", "the full configuration")):
        print(f"  {out}/{name:12} {what}")
    print(f"  TensorBoard: tensorboard --logdir {out}")
    print(f"  try: inceptionnet eval {out}/best.pt   |   inceptionnet predict {out}/best.pt IMAGE")
    return 0


def keep_previous_run(run_dir: Path) -> Path:
    """Rename `run_dir` to `<run_dir>-<its last change, YYYYmmdd-HHMMSS>` (a free name) so a new demo starts
    in an empty folder and nothing of the old one is lost; returns the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(run_dir.stat().st_mtime))
    target = run_dir.with_name(f"{run_dir.name}-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = run_dir.with_name(f"{run_dir.name}-{stamp}-{suffix}")
    run_dir.rename(target)
    return target
