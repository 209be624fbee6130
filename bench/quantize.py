"""int8 against fp32: top-1 and throughput of a checkpoint as PyTorch (our fast path), fp32 ONNX and
static int8 ONNX (`inceptionnet quantize`), on the checkpoint's own validation split.

    python bench/quantize.py runs/demo/best.pt --threads 1 --rounds 7

Calibration uses up to --num-images images of the checkpoint's *training* split (linked into a temporary
folder), never the images the accuracy is measured on. Throughput: batch 1 and 16 at the checkpoint's input
size, each contender timed in alternating rounds (medians), all with the same number of threads.
Run by hand (never from unit tests).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import torch

from common import Contender, alternate, cpu_model, warm_up
from inceptionnet import fast
from inceptionnet.artifacts import LoadedModel, OnnxModel, load_model
from inceptionnet.data.datasets import build_datasets
from inceptionnet.deploy.quantize import quantize
from inceptionnet.evaluate.runner import evaluate, training_data
from inceptionnet.export import export
from inceptionnet.runtime import DTYPES, native_bf16, set_threads


def link_training_split(loaded: LoadedModel, folder: Path) -> Path:
    """A folder of class folders holding symlinks to the checkpoint's training-split images."""
    data, val_split, seed = training_data(loaded.meta, None, None, None)
    train = build_datasets(data, val_split, seed, None, None).train
    for i, (path, label) in enumerate(train.samples):
        target = folder / str(label) / f"{i}{Path(path).suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(Path(path).resolve())
    return folder


def pytorch_contenders(loaded: LoadedModel, x: torch.Tensor, calls: int, compile_too: bool) -> list[Contender]:
    """Our PyTorch inference paths: the fused eager graph (the default) and, optionally, torch.compile, in
    fp32 and, on a CPU with native bf16 (where `auto` may choose it), in bf16 too."""
    backends = ["eager", "compile"] if compile_too else ["eager"]
    precisions = ("fp32", "bf16") if native_bf16("cpu") else ("fp32",)
    out = []
    for name, backend in itertools.product(precisions, backends):
        run = fast.optimize(loaded.model, dtype=DTYPES[name], backend=backend, example_input=x)
        out.append(Contender(f"PyTorch {name} ({backend} graph)", _repeat(run, x, calls), calls * len(x), 0))
    return out


def _repeat(run, x: torch.Tensor, calls: int):
    def step() -> None:
        with torch.inference_mode():
            for _ in range(calls):
                run(x)
    return step


def throughput(loaded: LoadedModel, fp32: Path, int8: Path, batch: int, threads: int, rounds: int,
               compile_too: bool) -> list[Contender]:
    """Alternating-round timing of every contender at `batch` images per call."""
    size = loaded.preprocess.input_size
    x = torch.randn(batch, 3, size, size)
    calls = max(1, 64 // batch)
    contenders = pytorch_contenders(loaded, x, calls, compile_too)
    for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8", int8)):
        contenders.append(Contender(name, _repeat(OnnxModel(path, threads=threads), x, calls), calls * batch, 0))
    for c in contenders:
        warm_up(c, 2)
    alternate(contenders, rounds)
    return contenders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--num-images", type=int, default=300, help="calibration images")
    parser.add_argument("--method", default="minmax", help="calibration method")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    args = parser.parse_args()
    set_threads(args.threads)
    loaded = load_model(args.checkpoint)
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        tmp = Path(tmp)
        calib = link_training_split(loaded, tmp / "calib")
        export(loaded, "onnx", tmp / "fp32.onnx")
        result = quantize(args.checkpoint, calib, tmp / "int8.onnx", num_images=args.num_images, method=args.method)
        print(f"## int8 quantization of {loaded.meta['model_name']} ({args.checkpoint})\n")
        print(f"cpu: {cpu_model()}, {args.threads} thread(s); calibration: {result['calibration_images']} training "
              f"images, {args.method}\n")
        print("| model | top-1 | top-5 | loss | images |\n|---|---|---|---|---|")
        top1 = {}
        for name, source in (("PyTorch fp32", args.checkpoint), ("onnxruntime fp32", tmp / "fp32.onnx"),
                             ("onnxruntime int8", tmp / "int8.onnx")):
            report = evaluate(source, quiet=True)
            top1[name] = 100 * report["top1"]
            topk = next(k for k in report if k.startswith("top") and k != "top1")
            print(f"| {name} | {top1[name]:.2f}% | {100 * report[topk]:.2f}% | {report['loss']:.4f} | "
                  f"{report['images']} ({report['data']}) |")
        print(f"\nint8 top-1 drop vs PyTorch fp32: {top1['PyTorch fp32'] - top1['onnxruntime int8']:+.2f} points\n")
        print("| batch | contender | images/s (median) | int8 speed-up over it |\n|---|---|---|---|")
        for batch in (1, 16):
            contenders = throughput(loaded, tmp / "fp32.onnx", tmp / "int8.onnx", batch, args.threads, args.rounds,
                                    args.compile)
            int8 = contenders[-1].images_per_s()
            for c in contenders:
                print(f"| {batch} | {c.name} | {c.images_per_s():.1f} | {int8 / c.images_per_s():.2f}x |")


if __name__ == "__main__":
    main()
