"""The figures behind the precision defaults: bf16 against fp32 on this machine, for speed and agreement.

    .venv/bin/python bench/precision.py speed [--models googlenet_bn,inception_v3] [--batch 16] [--rounds 5]
    .venv/bin/python bench/precision.py agreement runs/demo/best.pt

`speed` times, per model, fp32 and bf16 alternately in one process: inference through `optimize` (the
fused graph, channels_last) and a training step (forward + backward + SGD under autocast, channels_last).
It prints median images/s and bf16/fp32. `agreement` evaluates a checkpoint on the validation split it was
trained with, in fp32 and in bf16, and prints both accuracies and the share of images whose top-1 agrees.
Every figure is for the CPU named in the header (bf16 is emulated, and slow, where oneDNN has no bf16 units).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from common import Contender, add_common_args, alternate, machine_header, warm_up
from inceptionnet import create_model, get_spec, optimize
from inceptionnet.runtime import set_threads


def inference_step(model: nn.Module, dtype: torch.dtype, x: torch.Tensor):
    fast = optimize(model, dtype=dtype, example_input=x[:1])
    return lambda: fast(x)


def training_step(name: str, dtype: torch.dtype, x: torch.Tensor):
    model = create_model(name, num_classes=10, aux_logits=False).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(x.shape[0]) % 10

    def step():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def compare(label: str, steps: dict[str, object], images: int, rounds: int) -> None:
    """Time the fp32 and bf16 `steps` alternately and print their images/s and ratio."""
    pair = [Contender(f"{label} {dtype}", step, images, 0) for dtype, step in steps.items()]
    for c in pair:
        warm_up(c, 1)
    alternate(pair, rounds)
    fp32, bf16 = (c.images_per_s() for c in pair)
    print(f"{label}: fp32 {fp32:.1f} img/s, bf16 {bf16:.1f} img/s, bf16/fp32 {bf16 / fp32:.2f}x", flush=True)


def speed(args: argparse.Namespace) -> None:
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    for name in args.models.split(","):
        size = args.size or get_spec(name).default_input_size
        x = torch.randn(args.batch, 3, size, size)
        model = create_model(name, num_classes=10, aux_logits=False).eval()
        label = f"{name} at {size} px, batch {args.batch}"
        compare(f"{label}, inference", {k: inference_step(model, d, x) for k, d in dtypes.items()}, args.batch,
                args.rounds)
        compare(f"{label}, training step", {k: training_step(name, d, x) for k, d in dtypes.items()}, args.batch,
                args.rounds)


def agreement(args: argparse.Namespace) -> None:
    from inceptionnet.artifacts import load_model
    from inceptionnet.evaluate.ensemble import load_member
    from inceptionnet.evaluate.runner import load_eval_data, training_data
    from inceptionnet.evaluate.tta import MultiCropTransform
    from inceptionnet.runtime import resolve_device

    loaded = load_model(args.checkpoint)
    data, val_split, seed = training_data(loaded.meta, None, None, None)
    members = {p: load_member(loaded, resolve_device("cpu"), precision=p) for p in ("fp32", "bf16")}
    eval_data = load_eval_data(data, MultiCropTransform("center", members["fp32"].preprocess), "val", val_split,
                               seed)
    predictions = {p: [] for p in members}
    targets = []
    loader = torch.utils.data.DataLoader(eval_data.dataset, batch_size=64)
    with torch.inference_mode():
        for crops, labels in loader:
            targets.append(labels)
            for p, member in members.items():
                predictions[p].append(member.model(crops[:, 0]).argmax(1))
    targets = torch.cat(targets)
    top1 = {p: torch.cat(v) for p, v in predictions.items()}
    accuracy = {p: float((v == targets).float().mean()) for p, v in top1.items()}
    agree = float((top1["fp32"] == top1["bf16"]).float().mean())
    print(f"{args.checkpoint} on {eval_data.description}: {len(targets)} images")
    print(f"top-1 fp32 {100 * accuracy['fp32']:.2f}%, bf16 {100 * accuracy['bf16']:.2f}% "
          f"(difference {100 * (accuracy['bf16'] - accuracy['fp32']):+.2f} points); top-1 agreement {100 * agree:.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed", help="bf16 against fp32 images/s, inference and training step")
    add_common_args(p)
    p.add_argument("--models", default="googlenet_bn,inception_v3")
    p.add_argument("--size", type=int, help="input size (default: each model's)")
    p = sub.add_parser("agreement", help="a checkpoint's validation accuracy in fp32 and bf16, and their agreement")
    p.add_argument("checkpoint")
    p.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        set_threads(args.threads)
    print(machine_header(), flush=True)
    speed(args) if args.command == "speed" else agreement(args)


if __name__ == "__main__":
    main()
