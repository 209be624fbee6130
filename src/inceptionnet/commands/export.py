"""`inceptionnet export`: a checkpoint as ONNX, TorchScript or safetensors, checked against PyTorch."""

from __future__ import annotations

import argparse

from . import add_precision_option
from .pretrained_option import add_pretrained_options, checkpoint_or_tag


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a checkpoint to ONNX, TorchScript or safetensors (parity-checked)",
                       description="Export the inference graph (no aux heads, dynamic batch size), run the written "
                                   "file on a batch and compare it with eager PyTorch; exit 2 if it differs.")
    p.add_argument("checkpoint", nargs="?", help="checkpoint file, a run folder holding best.pt / last.pt, or a "
                                                  "weights tag (see `inceptionnet weights`)")
    add_pretrained_options(p, "a checkpoint")
    p.add_argument("--format", required=True, help="onnx, torchscript or safetensors")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--input-size", type=int, default=None, help="example input side (default: the model's)")
    p.add_argument("--atol", type=float, default=None,
                   help="largest allowed |logit difference| vs PyTorch, per unit of max(1, largest |logit|) "
                        "(default: 1e-4 in fp32, 0.1 in bf16)")
    p.add_argument("--dynamo", action="store_true", help="ONNX via torch.export instead of the TorchScript tracer")
    p.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="write the plain model's graph instead of the fused one (BN folded, 1x1 convs merged)")
    add_precision_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    args.checkpoint = checkpoint_or_tag(args)
    from ..export import describe, export

    print(describe(export(args.checkpoint, args.format, args.out, input_size=args.input_size, atol=args.atol,
                          dynamo=args.dynamo, optimize=args.optimize, precision=args.precision)))
    return 0
