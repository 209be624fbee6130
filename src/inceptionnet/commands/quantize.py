"""`inceptionnet quantize`: a checkpoint as a static int8 ONNX model, calibrated on an image folder."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    from ..deploy.quantize import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES

    p = sub.add_parser("quantize", help="post-training static int8 quantization to ONNX (onnxruntime)",
                       description="Export CHECKPOINT to fp32 ONNX, calibrate activation ranges on images of "
                                   "--calib (with the model's own preprocessing) and write an int8 QDQ model with "
                                   "per-channel weights. eval, predict and serve run the result.")
    p.add_argument("checkpoint", help="checkpoint file, run folder, or an fp32 .onnx written by export")
    p.add_argument("--calib", required=True, metavar="FOLDER", help="image folder for calibration (recursive)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--num-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                   help="calibration images, a seeded sample of the folder")
    p.add_argument("--method", default="minmax", help=f"calibration: {', '.join(CALIBRATION_METHODS)}")
    p.add_argument("--per-tensor", dest="per_channel", action="store_false",
                   help="one weight scale per tensor instead of per output channel")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    return p


def run(args: argparse.Namespace) -> int:
    from ..deploy.quantize import describe, quantize

    print(describe(quantize(args.checkpoint, args.calib, args.out, num_images=args.num_images, method=args.method,
                            per_channel=args.per_channel, seed=args.seed)))
    return 0
