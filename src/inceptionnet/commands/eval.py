"""`inceptionnet eval`: accuracy, loss, per-class metrics and confusion matrix of a checkpoint or an ensemble,
with the papers' multi-crop testing."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_precision_option
from .pretrained_option import add_pretrained_options, checkpoint_or_tag


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate a checkpoint (or an ensemble) with centre, 10-crop or 144-crop testing",
                       description="Evaluate CHECKPOINT on --data and write report.json, confusion.csv and "
                                   "confusion.png into --out.")
    p.add_argument("checkpoint", nargs="?",
                   help="checkpoint file, run folder (best.pt / last.pt), .safetensors from export / convert, "
                        ".onnx from export / quantize, or a weights tag (see `inceptionnet weights`)")
    add_pretrained_options(p, "a checkpoint")
    p.add_argument("--data", default=None,
                   help="image folder (class folders, or train/val[/test]) or CIFAR-10 folder; default: the "
                        "data the checkpoint was trained on (its val split)")
    p.add_argument("--out", default=None, help="folder for the report (default: <checkpoint folder>/eval-<tta>)")
    p.add_argument("--tta", default="center",
                   help="test-time crops: center, 10crop or 144crop (144crop = GoogLeNet's 4 scales x 3 squares x "
                        "6 crops x 2 mirrors)")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="CKPT",
                   help="more checkpoints whose softmax is averaged with CHECKPOINT's (same classes)")
    p.add_argument("--split", default="auto",
                   help="auto, all, val or test: which images of --data (auto: test, else val, of a split "
                        "layout; every image of a plain folder of class folders)")
    p.add_argument("--val-split", type=float, default=None,
                   help="val fraction when a folder is split (default: the checkpoint's training value)")
    p.add_argument("--seed", type=int, default=None, help="seed of that split (default: the training seed)")
    p.add_argument("--batch-size", type=int, default=64, help="crops per forward pass")
    p.add_argument("--workers", type=int, default=0, help="image decoding processes")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="run the plain models instead of the fused inference graphs (BN folded, 1x1 convs merged)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_precision_option(p)
    return p


def default_out(checkpoint: str, tta: str) -> Path:
    """Where the report goes without --out: beside the checkpoint (inside it for a run folder)."""
    path = Path(checkpoint)
    return (path if path.is_dir() else path.parent) / f"eval-{tta}"


def run(args: argparse.Namespace) -> int:
    args.checkpoint = checkpoint_or_tag(args)
    from ..evaluate.runner import evaluate

    out = args.out or default_out(args.checkpoint, args.tta)
    report = evaluate(args.checkpoint, data=args.data, out=out, tta=args.tta, ensemble=args.ensemble,
                      batch_size=args.batch_size, device=args.device, workers=args.workers, split=args.split,
                      val_split=args.val_split, seed=args.seed, quiet=args.quiet,
                      optimize=args.optimize, precision=args.precision)
    topk = next(k for k in report if k.startswith("top") and k != "top1")
    print(f"{report['data']}: {report['images']} images, tta {report['tta']} ({report['crops_per_image']} crops), "
          f"{len(report['checkpoints'])} model(s)")
    print(f"top1 {report['top1']:.4f}  {topk} {report[topk]:.4f}  loss {report['loss']:.4f}  "
          f"macro F1 {report['macro_f1']:.4f}  {1000 * report['seconds_per_image']:.1f} ms/image")
    print("precision: " + "; ".join(f"{p['name']} ({p['reason']})" for p in report["precision"]))
    backends = [f"{p['backend']} ({p['backend_reason']})" for p in report["precision"] if "backend" in p]
    if backends:  # ONNX members and --no-optimize run no fused graph, so no backend was chosen
        print("backend: " + "; ".join(backends))
    if report["skipped"]:
        print(f"skipped {len(report['skipped'])} unreadable file(s); listed in report.json")
    print(f"report: {out}/report.json, confusion.csv, confusion.png")
    return 0
