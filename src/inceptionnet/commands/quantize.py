"""`inceptionnet quantize`: a checkpoint as a static int8 ONNX model, calibrated on an image folder."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    from ..deploy.quantize import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES

    p = sub.add_parser("quantize", help="post-training static int8 quantization to ONNX (onnxruntime)",
                       description="Export CHECKPOINT to fp32 ONNX, calibrate activation ranges on images of "
                                   "--calib (with the model's own preprocessing) and write an int8 QDQ model with "
                                   "per-channel 7-bit weights, the classifier in fp32. eval, predict and serve run "
                                   "the result.")
    p.add_argument("checkpoint", help="checkpoint file, run folder, or an fp32 .onnx written by export")
    p.add_argument("--calib", required=True, metavar="FOLDER", help="image folder for calibration (recursive)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--num-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                   help="calibration images, a seeded sample of the folder")
    p.add_argument("--method", default="minmax", help=f"calibration: {', '.join(CALIBRATION_METHODS)}")
    p.add_argument("--per-tensor", dest="per_channel", action="store_false",
                   help="one weight scale per tensor instead of per output channel")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    p.add_argument("--full-range", dest="reduce_range", action="store_false",
                   help="8-bit weights instead of 7 (7 by default: CPUs without VNNI overflow with 8)")
    p.add_argument("--quantize-classifier", dest="fp32_classifier", action="store_false",
                   help="quantize the classifier too (fp32 by default, for accuracy at no measured cost)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..deploy.quantize import describe, quantize

    print(describe(quantize(args.checkpoint, args.calib, args.out, num_images=args.num_images, method=args.method,
                            per_channel=args.per_channel, seed=args.seed, reduce_range=args.reduce_range,
                            fp32_classifier=args.fp32_classifier)))
    return 0
