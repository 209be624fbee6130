"""Training-step speed (forward, backward, SGD step): ours (optimize(mode="train")) against torchvision/timm.

    .venv/bin/python bench/train.py [--models googlenet,inception_v3] [--rounds 5] [--batch 16]
        [--configs eager,eager_cl,compile] [--precision fp32|bf16]

Both sides train without aux heads (timm's Inception-v3 has none), cross-entropy on random labels,
SGD with momentum; with `--precision bf16` both run forward and loss under bf16 autocast (the engine's
mixed precision: fp32 weights and optimizer). Each peer configuration is tried briefly and the fastest
kept (the peer steps with torch.optim.SGD as constructed by default; "eager_cl_fused" gives it the fused
SGD our engine uses, for reference); ours is `optimize(model, mode="train")` (and, with "compile" in
--configs, `optimize(..., backend="compile")`) stepped by the engine's `build_optimizer`.
Then ours and the best peer alternate for --rounds rounds. FLOPs per step are counted (forward + backward).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from torch import nn

from common import (
    Contender,
    alternate,
    count_flops,
    format_row,
    pick_best,
    timed_build,
)
from inceptionnet import optimize
from inceptionnet.engine.optim import build_optimizer
from inceptionnet.recipes import get_recipe
from inceptionnet.runtime import Precision
from pairs import PAIRS, ours, run_pairs

CONFIGS = ("eager", "eager_cl", "eager_cl_fused", "compile")
LR, MOMENTUM = 0.01, 0.9


def train_step(model: nn.Module, x: torch.Tensor, memory_format: torch.memory_format, optimizer=None,
               precision: str = "fp32"):
    """One SGD step of `model` on (x, random labels) as a closure; the model is trained in place.
    `optimizer` defaults to torch.optim.SGD as a user constructs it (lr 0.01, momentum 0.9); `precision`
    "bf16" runs forward and loss under bf16 autocast."""
    model.train()
    x = x.contiguous(memory_format=memory_format)
    target = torch.randint(0, 1000, (x.shape[0],))
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    autocast = Precision(precision, "cpu").autocast

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()
        return loss
    return step


def peer_step(build, config: str, x: torch.Tensor, precision: str):
    """A fresh peer prepared as `config` (plain PyTorch only): its training step."""
    model = build()
    memory_format = torch.contiguous_format if config == "eager" else torch.channels_last
    model = model.to(memory_format=memory_format)
    if config == "compile":
        model = torch.compile(model)
    fused = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, fused=True) if config.endswith("fused") \
        else None
    return train_step(model, x, memory_format, fused, precision)


def our_step(name: str, backend: str, x: torch.Tensor, precision: str):
    model = optimize(ours(name), mode="train", backend=backend)
    recipe = dataclasses.replace(get_recipe("googlenet-paper"), lr=LR, momentum=MOMENTUM, weight_decay=0.0)
    return train_step(model, x, torch.channels_last, build_optimizer(model, recipe), precision)


def run_pair(key: str, args: argparse.Namespace, peak: float) -> list[str]:
    pair = PAIRS[key]
    x = torch.randn(args.batch, 3, pair.size, pair.size)
    lines = [f"{key} training step at {pair.size}x{pair.size}, batch {args.batch}, {args.precision}:"]
    print(lines[0], flush=True)
    name = pair.ours[0]
    flops = count_flops(train_step(ours(name), x, torch.contiguous_format))
    backends = ["eager"] + (["compile"] if "compile" in args.configs else [])
    mine = []
    for backend in backends:
        step, setup_s = timed_build(lambda b=backend: our_step(name, b, x, args.precision))
        mine.append(Contender(f"ours {name} train [{backend}]", step, args.batch, flops, setup_s))
    print("  ours:", flush=True)
    best_mine = pick_best(mine)
    for peer_name, build_peer in pair.peers.items():
        peer_flops = count_flops(train_step(build_peer(), x, torch.contiguous_format))
        candidates = []
        for config in args.configs:
            step, setup_s = timed_build(lambda c=config, b=build_peer: peer_step(b, c, x, args.precision))
            candidates.append(Contender(f"{peer_name} train [{config}]", step, args.batch, peer_flops, setup_s))
        print(f"  {peer_name}:", flush=True)
        best_peer = pick_best(candidates)
        alternate([best_mine, best_peer], args.rounds)
        ratio = best_mine.images_per_s() / best_peer.images_per_s()
        block = [format_row(c, peak) for c in (best_mine, best_peer)]
        block.append(f"  ours/peer ({name} vs {peer_name}): {ratio:.2f}x")
        print("\n".join(block), flush=True)
        lines += block
        best_mine.times.clear()
    return lines


def main() -> None:
    run_pairs(__doc__.splitlines()[0], run_pair, "googlenet,inception_v3", CONFIGS)


if __name__ == "__main__":
    main()
