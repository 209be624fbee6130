"""`inceptionnet weights`: the published weight files by tag, their accuracy, size and cache state."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("weights", help="list the published weights (tags) and whether each is cached",
                       description="List every registered weight file: tag, ImageNet top-1/top-5 as published, "
                                   "file size, layout, and where it is cached (or 'not cached').")
    p.add_argument("model", nargs="?", help="only the weights of this model")
    p.add_argument("--weights-dir", metavar="DIR", help="also look in this folder (default $INCEPTIONNET_WEIGHTS)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..models import get_spec
    from ..weights import cached_path, list_weights

    if args.model:
        get_spec(args.model.split(".")[0])  # an unknown name is a one-line error
    rows = [("tag", "top-1", "top-5", "MB", "layout", "cached")]
    for spec in list_weights(args.model.split(".")[0] if args.model else None):
        path = cached_path(spec, args.weights_dir)
        rows.append((spec.tag, f"{spec.top1:.2f}", f"{spec.top5:.2f}", f"{spec.file_mb:.0f}", spec.source,
                     str(path) if path else "not cached"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0
