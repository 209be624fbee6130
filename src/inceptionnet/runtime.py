"""Where and how computation runs: the device, the precision policy, the bf16 hardware check, threads and
seeding (one function each).

The precision policy, in one place, for training, evaluation, prediction, export and `optimize`:

- `fp32`, `bf16`, `fp16` run as asked (bf16/fp16 on a CPU without native units are emulated: correct,
  but slower than fp32; the log says so).
- Training `auto`: bf16 autocast where the device has native bf16 (CPUs with AVX512-BF16/AMX, CUDA GPUs
  with bf16), fp16 autocast with a GradScaler on older GPUs, fp32 elsewhere.
- Inference `auto` (eval, predict, TorchScript export): fp32 where the device has no native bf16 (there
  emulated bf16 is slower, bench/RESULTS.md); where it has, both graphs are built and timed on the first
  real batch, and bf16 is kept only when it is faster by `MIN_SPEEDUP` and agrees with fp32 on the top-1
  class of every image of that batch (`choose_inference_precision`).
- `inceptionnet.optimize` keeps its promise of fp32 logits unless a dtype is asked for.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# bf16 inference must beat fp32 by this factor on the first batch to be chosen by `auto`.
MIN_SPEEDUP = 1.1
# Largest |difference| from the fp32 logits, per unit of the largest fp32 |logit|, that a whole network may
# show in each precision: bf16 keeps 8 significant bits (about 2 decimal digits) and its rounding compounds
# over tens of layers (random-init networks of the registry measured up to 0.043); fp16 keeps 11 bits;
# fp32 reorderings (BN folding, merged convolutions) stay near float32 rounding.
LOGIT_TOLERANCE = {"fp32": 1e-4, "bf16": 0.1, "fp16": 0.02}
_MASK63 = (1 << 63) - 1


def resolve_device(name: str | torch.device | None = None, local_rank: int | None = None) -> torch.device:
    """The torch device for `--device` ("auto"/None, "cpu", "cuda", "cuda:1", ...): auto picks CUDA when
    available. Under torchrun (`local_rank` given) a CUDA process uses GPU `local_rank`."""
    name = "auto" if name is None else str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA GPU is visible on this machine")
        if local_rank is not None:
            if local_rank >= torch.cuda.device_count():
                raise ConfigError(f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                                  "use --nproc_per_node at most the number of GPUs")
            device = torch.device("cuda", local_rank)
    return device


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True when `device` computes bf16 in hardware: a CUDA GPU with bf16, or a CPU whose oneDNN has bf16
    instructions (AVX512-BF16 or AMX; `ONEDNN_MAX_CPU_ISA=AVX2` hides them)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass
class Precision:
    """How a model runs: `name` fp32/bf16/fp16 on `device_type`, and why this one was chosen.

    `measured` holds the figures an `auto` inference choice was made from (ms per batch, agreement).
    """

    name: str
    device_type: str
    reason: str = ""
    measured: dict = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self):
        """The autocast context for a forward pass and loss (a no-op in fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16 training (its gradients underflow without one); None otherwise."""
        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None

    def describe(self) -> str:
        """One line for logs: the precision and the reason, e.g. "bf16 (auto: native bf16 on this CPU)"."""
        return f"{self.name} ({self.reason})" if self.reason else self.name


def _check(requested: str) -> str:
    if requested not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    return requested


def _explicit(requested: str, device: torch.device) -> Precision:
    if requested != "fp32" and device.type == "cpu" and not native_bf16(device):
        return Precision(requested, "cpu", "as asked; this CPU has no native bf16/fp16 units, so it is emulated "
                                           "and slower than fp32")
    return Precision(requested, device.type, "as asked")


def training_precision(requested: str, device: torch.device) -> Precision:
    """The training precision for `--precision requested` on `device` (see the module docstring)."""
    if _check(requested) != "auto":
        return _explicit(requested, device)
    if device.type == "cuda":
        if native_bf16(device):
            return Precision("bf16", "cuda", "auto: the GPU has bf16")
        return Precision("fp16", "cuda", "auto: the GPU has no bf16; fp16 with loss scaling")
    if device.type == "cpu" and native_bf16(device):
        return Precision("bf16", "cpu", "auto: native bf16 on this CPU (AVX512-BF16/AMX)")
    return Precision("fp32", device.type, f"auto: no native bf16 on this {device.type}")


def channels_last_default(device: torch.device) -> bool:
    """Whether `auto` trains in channels_last on `device`: oneDNN (CPU) and cuDNN (tensor cores) both run
    NHWC convolutions natively; on two Zen 3 cores it measured 1.18x a GoogLeNet-BN step (bench/RESULTS.md)."""
    return device.type in ("cpu", "cuda")


def median_ms(run: Callable[[], Tensor], repeats: int = 3) -> float:
    """Median milliseconds of `repeats` calls of `run`, after one untimed call."""
    run()  # the first call pays for weight packing and allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def choose_inference_precision(requested: str, device: torch.device, build: Callable[[torch.dtype], nn.Module],
                               sample: Callable[[], Tensor | None]) -> tuple[Precision, nn.Module]:
    """The inference precision for `--precision requested` and the model built for it.

    `build(dtype)` returns a model mapping (N, C, H, W) images to (N, K) float logits in that dtype.
    `sample()` gives a batch of real inputs (called only when needed): with `auto` on a device with native
    bf16, both fp32 and bf16 are built and timed on it (median of 3 after a warm-up), and bf16 is kept only
    when it is at least MIN_SPEEDUP times faster and picks the same top-1 class for every image. Without
    native bf16 `auto` is fp32 (emulated bf16 is slower than fp32), as it is when there is no sample.
    """
    if _check(requested) != "auto":
        precision = _explicit(requested, device)
        return precision, build(precision.dtype)
    fp32 = build(torch.float32)
    if not native_bf16(device):
        return Precision("fp32", device.type, f"auto: no native bf16 on this {device.type}"), fp32
    sample = sample()
    if sample is None:
        return Precision("fp32", device.type, "auto: no image to measure bf16 on"), fp32
    bf16 = build(torch.bfloat16)
    sample = sample.to(device)
    with torch.inference_mode():
        ref, low = fp32(sample).float(), bf16(sample).float()
        ms32, ms16 = median_ms(lambda: fp32(sample)), median_ms(lambda: bf16(sample))
    agreement = float((ref.argmax(1) == low.argmax(1)).float().mean())
    measured = {"fp32_ms": round(ms32, 2), "bf16_ms": round(ms16, 2), "top1_agreement": agreement,
                "batch": int(sample.shape[0])}
    if ms32 / ms16 >= MIN_SPEEDUP and agreement == 1.0:
        return Precision("bf16", device.type, f"auto: {ms32 / ms16:.2f}x fp32, same top-1", measured), bf16
    return Precision("fp32", device.type, f"auto: bf16 {ms32 / ms16:.2f}x fp32, top-1 agreement "
                                          f"{100 * agreement:.1f}%", measured), fp32


# ---- inference backend: compile when the job pays back compilation -----------------------------------------
@dataclass(frozen=True)
class CompileCost:
    """torch.compile of a model's fused inference graph against the same graph run eagerly, as measured on
    one kind of device (batch 16, the model's default input size): how much faster it runs, and how many
    seconds compiling took."""

    speedup: float
    setup_s: float


# bench/infer.py on a 2-core Xeon with AMX in bf16 (bench/RESULTS.md): compile against the default eager graph,
# per model (the gain is the model's own). Elsewhere the eager graph runs: on a 2-core Zen 3 (AVX2, fp32)
# compile ran GoogLeNet 1.08x and Inception-v3 slower than eager.
COMPILE_COSTS: dict[tuple[str, str], dict[str, CompileCost]] = {("cpu", "bf16"): {
    "googlenet_tv": CompileCost(1.56, 33.1), "googlenet": CompileCost(1.78, 21.1),
    "inception_v3": CompileCost(1.06, 43.9), "inception_v4": CompileCost(1.03, 47.6),
    "inception_resnet_v2": CompileCost(1.12, 33.4)}}
# Below this many images no measured break-even is reached, so the eager graph is not even timed.
COMPILE_MIN_IMAGES = 2000


def choose_inference_backend(precision: Precision, model_name: str, images: int,
                             eager_ms_per_image: Callable[[], float]) -> tuple[str, str]:
    """"compile" or "eager" for running `images` (N, C, H, W) inputs through the fused graph of `model_name`
    in `precision`, with the reason: compile where it was measured to pay for this model on this kind of
    device (`COMPILE_COSTS`) and the job is long enough to pay back the compilation, given
    `eager_ms_per_image()` (called only when that is in reach)."""
    cost = COMPILE_COSTS.get((precision.device_type, precision.name), {}).get(model_name)
    if cost is None or (precision.device_type == "cpu" and not native_bf16("cpu")):
        return "eager", f"compile is not measured to pay for {model_name} in {precision.name} on this " \
                        f"{precision.device_type}"
    if images < COMPILE_MIN_IMAGES:
        return "eager", f"{images} images are too few to pay for compiling"
    saved_s_per_image = eager_ms_per_image() / 1e3 * (1 - 1 / cost.speedup)
    break_even = cost.setup_s / saved_s_per_image
    side = "above" if images >= break_even else "below"
    why = f"{images} images, {side} the break-even of about {break_even:.0f} ({cost.setup_s:.0f} s to compile)"
    return ("compile" if side == "above" else "eager"), why


# ---- threads and seeding ------------------------------------------------------------------------------------
def set_threads(threads: int) -> None:
    """Run torch's CPU kernels on `threads` threads (at least 1)."""
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, different for (a, b) and (b, a) (splitmix-style mixing): the one way
    seeds are derived (per rank, per epoch, per sample, per batch)."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (int(part) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & _MASK63
        h = (h * 0xBF58476D1CE4E5B9) & _MASK63
        h ^= h >> 31
    return h


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global RNG and torch (CPU and every GPU) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Ask torch for deterministic kernels (and cuDNN without benchmarking) when `enabled`."""
    if enabled:  # cuBLAS is only deterministic with a fixed workspace; must be set before its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
