"""Mixed precision: bf16 autocast where the hardware has it, fp16 with a GradScaler on older GPUs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass
class Precision:
    """How the forward pass runs: `dtype` None means full fp32; `scaler` is set for fp16 only."""

    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    def autocast(self):
        """The autocast context for the forward pass and loss (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def name(self) -> str:
        return "fp32" if self.dtype is None else str(self.dtype).removeprefix("torch.")


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def build_precision(device: torch.device, amp: bool) -> Precision:
    """fp32 when `amp` is False; otherwise bf16 autocast on CPUs/GPUs with bf16, fp16 + GradScaler on
    older GPUs. A ConfigError when `amp` is asked for on hardware that has neither."""
    if not amp:
        return Precision(device.type, None, None)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("cuda", torch.bfloat16, None)
        return Precision("cuda", torch.float16, torch.amp.GradScaler("cuda"))
    if device.type == "cpu" and cpu_has_bf16():
        return Precision("cpu", torch.bfloat16, None)
    raise ConfigError(f"--amp: the {device.type} device here has no bf16 support; run without --amp")
