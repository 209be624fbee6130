"""Fine-tuning from a checkpoint this library trained, against training from scratch at the same budget.

    OMP_NUM_THREADS=2 .venv/bin/python bench/finetune.py [--source-budget 15m] [--budget 4m] \
        [--model inception_cifar] [--img-size 64] [--source CKPT] [--out /tmp/finetune]

Run by hand, never from the tests; needs the archives of /work/shared/datasets unpacked (see that README).
1. Source: `inceptionnet train` on bench/learning.py's CIFAR-10 subset (500 training and 100 test JPEGs a
   class of /tmp/cifar10; the whole set takes about half an hour an epoch on 2 cores) with `--model`, the
   `auto` recipe and `--source-budget` (or `--source` names a checkpoint to reuse).
2. Target: the sign-language digits (/tmp/signs/Dataset, seeded 80/20 split), `auto` recipe at `--img-size`,
   once from scratch and once from the source checkpoint (`--weights`: the auto recipe's fine-tuning form,
   a new head trained alone first), each within `--budget`.
The table (run, final, best, last-5 mean, balanced accuracy, wall time) is printed as Markdown with the CPU
and load average, and saved as <out>/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from common import cpu_model
from learning import SIGNS, cifar_subset, run_one, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="inception_cifar")
    parser.add_argument("--source", type=Path, help="a CIFAR-10 checkpoint to start from (default: train one)")
    parser.add_argument("--source-budget", default="15m")
    parser.add_argument("--budget", default="4m", help="wall-clock budget of each sign-language run")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("/tmp/finetune"))
    args = parser.parse_args()
    stamp = time.strftime("%H%M%S")
    rows = []
    source = args.source
    if source is None:
        run_dir = args.out / f"cifar-{stamp}"
        rows.append({"set": "cifar10 subset", **run_one(cifar_subset(args.out), "auto", args.source_budget, [],
                                                        run_dir, ("--model", args.model))})
        print(table(rows[-1:]), flush=True)
        source = run_dir / "best.pt"
    size = [f"img_size={args.img_size}"]
    for name, extra in (("scratch", ()), ("from CIFAR-10", ("--weights", str(source)))):
        run_dir = args.out / f"signs-{name.split()[0]}-{stamp}"
        rows.append({"set": f"signs, {name}",
                     **run_one(SIGNS, "auto", args.budget, size, run_dir, ("--model", args.model, *extra))})
        print(table(rows[-1:]), flush=True)
    print(f"\nCPU: {cpu_model()}, {os.cpu_count()} cores; source {source}; budget {args.budget} a sign-language run\n")
    print(table(rows))
    (args.out / "results.json").write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
