"""Inference speed: ours (inceptionnet.optimize) against torchvision/timm at their best configuration.

    .venv/bin/python bench/infer.py [--models googlenet,inception_v3] [--rounds 5] [--batch 16]
        [--configs eager,eager_cl,jit,jit_cl,compile] [--precision fp32|bf16]

For each model: every peer configuration is built and tried briefly, the fastest one is kept; ours is
`optimize(model)` (backend "auto": the fused eager graph under inference mode) and, when "compile" is among
--configs, `optimize(model, backend="compile")`. Then ours and the best peer are timed alternately
for --rounds rounds; printed are median images/s, GFLOP/s (2 x MACs / time), the fraction of the
measured GEMM peak and ours/peer.
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch
from torch import nn

from common import (
    Contender,
    alternate,
    count_flops,
    format_row,
    pick_best,
    timed_build,
    warm_up,
)
from inceptionnet import optimize
from inceptionnet.runtime import DTYPES
from pairs import PAIRS, ours, run_pairs

CONFIGS = ("eager", "eager_cl", "jit", "jit_cl", "compile")


def peer_step(model: nn.Module, config: str, x: torch.Tensor, dtype: torch.dtype):
    """A peer `model` prepared as `config` (plain PyTorch only, no inceptionnet code): a step running it on `x`."""
    model = copy.deepcopy(model).eval().to(dtype)
    channels_last = config in ("eager_cl", "jit_cl", "compile")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = x.to(dtype).contiguous(memory_format=memory_format)
    if config.startswith("jit"):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
    elif config == "compile":
        model = torch.compile(model, options={"freezing": True})

    def step():
        with torch.inference_mode():
            return model(x)
    return step


def our_step(model: nn.Module, backend: str, x: torch.Tensor, dtype: torch.dtype):
    fast = optimize(model, backend=backend, dtype=dtype, example_input=x[:1])
    return lambda: fast(x)


def contender(name: str, build, images: int, flops: int) -> Contender:
    step, setup_s = timed_build(build)
    return Contender(name, step, images, flops, setup_s)


def profile(step, rows: int = 15) -> str:
    """torch.profiler table of two calls of `step`: where the time goes, by operator (self CPU time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def run_pair(key: str, args: argparse.Namespace, peak: float) -> list[str]:
    pair = PAIRS[key]
    dtype = DTYPES[args.precision]
    x = torch.randn(args.batch, 3, pair.size, pair.size)
    lines = [f"{key} at {pair.size}x{pair.size}, batch {args.batch}, {args.precision}:"]
    print(lines[0], flush=True)
    # "auto" is what a user gets; "eager" (the fused fx graph, channels_last) is tried when the peer's eager is.
    our_backends = (["auto"] + (["eager"] if "eager_cl" in args.configs else [])
                    + (["compile"] if "compile" in args.configs else []))
    our_models = {name: ours(name).eval() for name in pair.ours}
    flops = {name: count_flops(lambda m=m: m(x)) for name, m in our_models.items()}
    mine = [contender(f"ours {name} [{backend}]", lambda m=m, b=backend: our_step(m, b, x, dtype), args.batch,
                      flops[name])
            for name, m in our_models.items() for backend in our_backends]
    print("  ours:", flush=True)
    best_mine = pick_best([c for c in mine if c.name.startswith(f"ours {pair.ours[0]} ")])
    extras = [pick_best([c for c in mine if c.name.startswith(f"ours {name} ")]) for name in pair.ours[1:]]
    for peer_name, build_peer in pair.peers.items():
        peer = build_peer().eval()
        peer_flops = count_flops(lambda p=peer: p(x))
        candidates = [contender(f"{peer_name} [{config}]", lambda c=config, p=peer: peer_step(p, c, x, dtype),
                                args.batch, peer_flops) for config in args.configs]
        print(f"  {peer_name}:", flush=True)
        best_peer = pick_best(candidates)
        contenders = [best_mine, best_peer] + extras
        for c in contenders:
            warm_up(c, 1)
        alternate(contenders, args.rounds)
        ratio = best_mine.images_per_s() / best_peer.images_per_s()
        block = [format_row(c, peak) for c in contenders]
        block.append(f"  ours/peer ({pair.ours[0]} vs {peer_name}): {ratio:.2f}x")
        print("\n".join(block), flush=True)
        lines += block
        for c in contenders:
            c.times.clear()
        if args.profile:
            for c in (best_mine, best_peer):
                print(f"profile of {c.name}:\n{profile(c.step)}", flush=True)
    return lines


def main() -> None:
    run_pairs(__doc__.splitlines()[0], run_pair, ",".join(PAIRS), CONFIGS, with_profile=True)


if __name__ == "__main__":
    main()
