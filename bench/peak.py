"""The machine's measured GEMM peak: large square torch.mm in fp32 and bf16, median GFLOP/s.

    .venv/bin/python bench/peak.py [--size 2048] [--rounds 7]

The figure is the denominator of "fraction of peak" in infer.py and train.py (they call `measure_peak`).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from common import machine_header, time_once
from inceptionnet.runtime import native_bf16, set_threads


def measure_peak(dtype: torch.dtype, size: int = 2048, rounds: int = 7) -> float:
    """Median GFLOP/s of `size`x`size` @ `size`x`size` matrix products in `dtype` (2 x size^3 FLOPs each)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: thread pool, packing buffers
    times = [time_once(lambda: torch.mm(a, b, out=out)) for _ in range(rounds)]
    return 2 * size**3 / statistics.median(times) / 1e9


def gemm_size(dtype: torch.dtype, size: int = 2048) -> int:
    """The side of the square GEMM to measure `dtype` with: `size`, except bf16 without bf16 hardware, where
    torch.mm runs a scalar fallback (~0.2 GFLOP/s): kept to 512^3 there."""
    return size if dtype != torch.bfloat16 or native_bf16("cpu") else min(size, 512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        set_threads(args.threads)
    print(machine_header())
    for dtype in (torch.float32, torch.bfloat16):
        size = gemm_size(dtype, args.size)
        print(f"GEMM peak {str(dtype):15s} {measure_peak(dtype, size, args.rounds):8.1f} GFLOP/s "
              f"(mm {size}^3, median of {args.rounds})")
    if not native_bf16("cpu"):
        print("no native bf16 instructions here: bf16 matmuls take a slow fallback path (emulated peak)")


if __name__ == "__main__":
    main()
