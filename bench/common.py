"""Shared harness for the speed comparisons: machine facts, FLOP counting, alternating timing rounds.

Run by hand (never from unit tests). Every comparison builds ours and the peer in one process and
times them in alternating order, round after round, so that load from other processes on the same
cores hits both alike; ratios of medians are what we report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from inceptionnet.runtime import native_bf16


def add_common_args(parser: argparse.ArgumentParser, default_rounds: int = 5) -> None:
    """Options shared by every bench script: rounds, batch size, threads."""
    parser.add_argument("--rounds", type=int, default=default_rounds, help="timed rounds (medians over them)")
    parser.add_argument("--batch", type=int, default=16, help="images per call")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")


def cpu_model() -> str:
    """The CPU's model name as lscpu prints it (platform.processor() as a fallback)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def machine_header() -> str:
    """One block of text naming the date, CPU, cores, ISA and library versions for a results file."""
    import torchvision

    try:
        import timm
        timm_version = timm.__version__
    except ImportError:
        timm_version = "not installed"
    return (f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
            f"cpu: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
            f"capability {torch.backends.cpu.get_cpu_capability()}, bf16 hardware: {native_bf16('cpu')}\n"
            f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm_version}")



def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations (2 x multiply-adds of convolutions and matmuls) of one call of `fn`."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


@dataclass
class Contender:
    """One thing being timed: `step()` runs one call over `images` images; `flops` per call."""

    name: str
    step: Callable[[], object]
    images: int
    flops: int
    setup_s: float = 0.0
    times: list[float] = field(default_factory=list)

    def median_s(self) -> float:
        return statistics.median(self.times)

    def images_per_s(self) -> float:
        return self.images / self.median_s()

    def gflops(self) -> float:
        return self.flops / self.median_s() / 1e9


def time_once(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def warm_up(contender: Contender, calls: int = 2) -> None:
    """Run a few untimed calls: compilation, weight packing and allocator warm-up happen here."""
    for _ in range(calls):
        contender.step()


def alternate(contenders: list[Contender], rounds: int) -> None:
    """Time every contender once per round, in an order that rotates each round; times are appended."""
    for r in range(rounds):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            c.times.append(time_once(c.step))


def pick_best(candidates: list[Contender], trials: int = 2) -> Contender:
    """The candidate with the lowest median over a few alternating trials (after a warm-up each); the first
    call's time is counted in `setup_s`."""
    for c in candidates:
        c.setup_s += time_once(c.step)  # torch.compile compiles (and jit optimises) lazily, in the first call
        warm_up(c, 1)
    alternate(candidates, trials)
    best = min(candidates, key=Contender.median_s)
    for c in candidates:
        print(f"    {c.name:42s} {c.images_per_s():8.2f} img/s  (setup {c.setup_s:5.1f} s)")
        c.times.clear()
    return best


def timed_build(build: Callable[[], tuple[Callable[[], object], int]]) -> tuple[Callable[[], object], float]:
    """Run `build()` and return its step function and how long building took in seconds."""
    start = time.perf_counter()
    step = build()
    return step, time.perf_counter() - start


def format_row(c: Contender, peak_gflops: float | None) -> str:
    frac = f"{100 * c.gflops() / peak_gflops:5.1f}%" if peak_gflops else "   n/a"
    return (f"  {c.name:44s} {c.images_per_s():8.2f} img/s  {c.gflops():7.1f} GFLOP/s  {frac} of peak  "
            f"(median of {len(c.times)}, setup {c.setup_s:.1f} s)")
