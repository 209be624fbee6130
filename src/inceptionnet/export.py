"""`inceptionnet.export`: a checkpoint's inference graph (no aux heads, dynamic batch size) as ONNX,
TorchScript or safetensors, checked against eager PyTorch before the file is put in place.

ONNX and TorchScript are written from `inceptionnet.optimize`'s fused graph (BN folded into the
convolutions, sibling 1x1 convolutions merged: fewer nodes for the runtime); safetensors holds the plain
model's state_dict, since it is a weights format.

The file is written under a temporary name, reloaded the way a user would load it (onnxruntime,
`torch.jit.load`, a fresh model + safetensors), run on a batch of a different size than the one used
for export and compared with the eager model; only when the outputs agree within `atol` is it
renamed onto `out`. Otherwise an `ExportError` is raised and no file is left behind. The reference
is always the plain model, so the check also covers the fusion.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from . import artifacts, fast
from ._callable import make_module_callable
from .artifacts import LoadedModel
from .artifacts.format import encode_metadata, stamped, write_model
from .errors import ConfigError, InceptionNetError
from .fileio import atomic_write
from .runtime import LOGIT_TOLERANCE, Precision, choose_inference_precision

FORMATS = ("onnx", "torchscript", "safetensors")
ONNX_OPSET = 17


class ExportError(InceptionNetError):
    """An exported model that does not reproduce the eager model's outputs (or cannot be exported)."""


class LogitsOnly(nn.Module):
    """The eval graph as exporters want it: one tensor in, the logits tensor out (no aux, no keywords)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _metadata(loaded: LoadedModel) -> dict[str, Any]:
    """The model file metadata (`inceptionnet.artifacts`) of the exported graph: no aux heads, float32, the
    training config kept (so that `eval` of an exported file finds the data it was trained on)."""
    kwargs = {**loaded.meta["model_kwargs"], "aux_logits": False}
    return stamped({**loaded.meta, "model_kwargs": kwargs, "precision": "fp32", "layout": "inceptionnet"})


def _write_onnx(model: nn.Module, example: Tensor, path: str, meta: dict[str, Any], dynamo: bool) -> None:
    import onnx

    if dynamo:
        batch = torch.export.Dim("batch")
        torch.onnx.export(model, (example,), path, dynamo=True, external_data=False, input_names=["input"],
                          output_names=["logits"], dynamic_shapes={"x": {0: batch}})
    else:
        # The TorchScript-based exporter: fast, and the same on torch 2.11 and 2.14.
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=ONNX_OPSET, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(path)
    for key, value in encode_metadata(meta).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, path)


def _run_onnx(path: str, x: Tensor) -> Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _write_torchscript(model: nn.Module, example: Tensor, path: str, meta: dict[str, Any], dynamo: bool) -> None:
    # No check_trace: the written file is compared with eager PyTorch afterwards anyway.
    traced = torch.jit.trace(model, example, check_trace=False)
    torch.jit.save(traced, path, _extra_files={"inceptionnet.json": json.dumps(encode_metadata(meta))})


def _run_torchscript(path: str, x: Tensor) -> Tensor:
    return torch.jit.load(path, map_location="cpu")(x)


def _write_safetensors(model: nn.Module, example: Tensor, path: str, meta: dict[str, Any], dynamo: bool) -> None:
    write_model(path, "safetensors", model.model.state_dict(), meta)


def _run_safetensors(path: str, x: Tensor) -> Tensor:
    return artifacts.load_model(path).model(x)


_WRITERS: dict[str, Callable[..., None]] = {"onnx": _write_onnx, "torchscript": _write_torchscript,
                                            "safetensors": _write_safetensors}
_RUNNERS: dict[str, Callable[[str, Tensor], Tensor]] = {"onnx": _run_onnx, "torchscript": _run_torchscript,
                                                        "safetensors": _run_safetensors}


def export(checkpoint: str | os.PathLike | LoadedModel, format: str, out: str | os.PathLike,
           input_size: int | None = None, batch_size: int = 2, atol: float | None = None, dynamo: bool = False,
           optimize: bool = True, precision: str = "auto") -> dict:
    """Export `checkpoint`'s model (eval mode, no aux heads) to `out` as `format` and check it. `checkpoint` is
    anything `inceptionnet.artifacts.load_model` takes except an .onnx, or what it returned.

    The export uses a (batch_size, C, S, S) example (S = `input_size` or the checkpoint's input size);
    the check runs a batch of batch_size + 1 through the written file and through the plain eager model,
    and raises ExportError if any logit differs by more than `atol` x max(1, largest |logit|): rounding
    grows with the logits' magnitude (BN folding alone moves logits of ~100 by ~1e-4); `atol` None takes
    the tolerance of the precision written (`inceptionnet.runtime.LOGIT_TOLERANCE`). `dynamo` selects
    torch.export-based ONNX. `optimize` writes ONNX and TorchScript from `inceptionnet.optimize(model, backend="eager")`
    (NCHW); False writes the plain model's graph. `precision`: ONNX and safetensors are float32 (onnxruntime's
    CPU kernels run float32 and int8, not bf16; safetensors holds the plain weights); TorchScript follows
    `inceptionnet.runtime.choose_inference_precision` (`auto` measures bf16 on the check batch where the CPU
    has native bf16). Returns {"path", "format", "max_abs_diff", "check_shape", "optimized", "precision"}.
    """
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    loaded = checkpoint if isinstance(checkpoint, LoadedModel) else artifacts.load_model(checkpoint)
    if loaded.kind == "onnx":
        raise ConfigError(f"{loaded.source} is already an ONNX export; export from its checkpoint")
    model = loaded.model.cpu().eval()
    plain = LogitsOnly(model).eval()
    size = input_size or loaded.preprocess.input_size
    channels = loaded.meta["model_kwargs"].get("in_chans", 3)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(batch_size, channels, size, size, generator=generator)
    check = torch.randn(batch_size + 1, channels, size, size, generator=generator)
    with torch.inference_mode():
        model(check)  # a too-small input_size fails here with the model's own clear message
    optimized = optimize and format != "safetensors"
    chosen, exported = _exported_graph(model, plain, format, optimized, precision, check)
    atol = LOGIT_TOLERANCE[chosen.name] if atol is None else atol
    result: dict[str, Any] = {"format": format, "check_shape": list(check.shape), "optimized": optimized,
                              "precision": chosen.name}

    def write_and_check(tmp: str) -> None:
        _write(format, exported, example, tmp, _metadata(loaded), dynamo)
        with torch.inference_mode():
            expected = plain(check)
            got = _RUNNERS[format](tmp, check)
        diff = float((got.float() - expected.float()).abs().max())
        allowed = atol * max(1.0, float(expected.abs().max()))
        result["max_abs_diff"] = diff
        if not diff <= allowed:  # also catches NaN
            raise ExportError(f"{format} export of {loaded.meta['model_name']} differs from PyTorch by {diff:.3g} "
                              f"(> {allowed:.3g} = atol {atol:g} x logit scale) on a batch of shape "
                              f"{tuple(check.shape)}; {out} was not written")

    result["path"] = str(atomic_write(out, write_and_check))
    return result


def _write(format: str, exported: nn.Module, example: Tensor, path: str, meta: dict[str, Any], dynamo: bool) -> None:
    """Write `exported` to `path` as `format`; an ExportError naming the model when the exporter fails."""
    with warnings.catch_warnings():
        # Deprecation notices of torch.jit and the TorchScript-based ONNX exporter are not the user's concern.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            _WRITERS[format](exported, example, path, meta, dynamo)
        except InceptionNetError:
            raise
        except Exception as e:  # exporters raise many types; the user needs the model and the reason
            raise ExportError(f"cannot export {meta['model_name']} to {format}: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None


def _exported_graph(model: nn.Module, plain: nn.Module, format: str, optimized: bool, precision: str,
                    check: Tensor) -> tuple[Precision, nn.Module]:
    """The precision and the module to export (see `export`'s docstring for which precision each format takes)."""
    cpu = torch.device("cpu")
    if format != "torchscript" or not optimized:
        if precision not in ("auto", "fp32"):
            hint = "drop --no-optimize" if format == "torchscript" else "--format torchscript runs in bf16"
            raise ConfigError(f"--precision {precision}: this {format} export is float32 ({hint})")
        if not optimized:
            return Precision("fp32", "cpu", "plain model"), plain
        return Precision("fp32", "cpu", f"{format} is float32"), LogitsOnly(
            fast.optimize(model, backend="eager", channels_last=False, dtype=torch.float32)).eval()
    return choose_inference_precision(
        precision, cpu, lambda dtype: LogitsOnly(fast.optimize(model, backend="eager", channels_last=False,
                                                               dtype=dtype)).eval(), lambda: check)


def describe(result: dict) -> str:
    """One line for the CLI: where the export went and how closely it matches eager PyTorch."""
    return (f"wrote {result['path']} ({result['format']}, {result['precision']}); max |diff| vs PyTorch "
            f"{result['max_abs_diff']:.2e} on a "
            f"batch of shape {tuple(result['check_shape'])}")


make_module_callable(__name__, export)
