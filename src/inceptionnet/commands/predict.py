"""`inceptionnet predict`: top-k classes of images or folders, optionally with Grad-CAM overlays."""

from __future__ import annotations

import argparse
import json
import sys

from . import add_precision_option
from .pretrained_option import add_pretrained_options, pretrained_tag


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="classify images or folders with a checkpoint",
                       description="Print the top-k classes of each image, using the checkpoint's own "
                                   "preprocessing. Unreadable files are reported on stderr and skipped.")
    p.add_argument("checkpoint",
                   help="checkpoint file, run folder (best.pt / last.pt), .safetensors from export / convert, "
                        ".onnx from export / quantize, or a weights tag (see `inceptionnet weights`)")
    p.add_argument("inputs", nargs="*", metavar="IMAGE|DIR", help="image files or folders (searched recursively)")
    add_pretrained_options(p, "a checkpoint (ImageNet class names, the weights' own preprocessing)")
    p.add_argument("--topk", type=int, default=5, help="classes shown per image")
    p.add_argument("--json", action="store_true", help="print one JSON list (errors included as entries)")
    p.add_argument("--cam", default=None, metavar="OUT_DIR", help="write a Grad-CAM overlay PNG per image here")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--optimize", action=argparse.BooleanOptionalAction, default=None,
                   help="run the fused inference graph (default: from 64 images on; --cam never does)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    add_precision_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..predict import iter_predictions

    tag, named_model = pretrained_tag(args, args.checkpoint)
    if tag is not None and not named_model:  # --pretrained TAG: the first positional is an image
        args.inputs = [args.checkpoint, *args.inputs]
    args.checkpoint = tag or args.checkpoint
    if not args.inputs:
        raise ConfigError("no images given")
    results = []
    for result in iter_predictions(args.checkpoint, args.inputs, topk=args.topk, cam_dir=args.cam,
                                   device=args.device, batch_size=args.batch_size, optimize=args.optimize,
                                   precision=args.precision):
        if "error" in result:
            print(f"inceptionnet predict: skipped {result['path']}: {result['error']}", file=sys.stderr)
        if args.json:
            results.append(result)
        elif "predictions" in result:
            shown = "  ".join(f"{p['class']} {p['probability']:.3f}" for p in result["predictions"])
            print(f"{result['path']}: {shown}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0
