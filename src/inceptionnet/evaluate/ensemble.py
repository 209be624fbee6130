"""Models evaluated together: each with its own preprocessing, softmax averaged over crops and models."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import artifacts, fast
from ..artifacts import LoadedModel, OnnxModel
from ..errors import ConfigError
from ..models.registry import Preprocess
from ..runtime import Precision, choose_inference_backend, choose_inference_precision, median_ms


@dataclass
class Member:
    """One model of an evaluation: the network (eval mode, on its device; plain, made by
    `inceptionnet.optimize`, or an ONNX file's onnxruntime session), how its inputs are made, the class
    names its outputs stand for and the precision it runs in."""

    source: str
    model: nn.Module | OnnxModel
    preprocess: Preprocess
    class_names: list[str]
    precision: Precision = dataclasses.field(default_factory=lambda: Precision("fp32", "cpu", "plain model"))

    @property
    def device(self) -> torch.device:
        """The device the network runs on (inputs are moved there)."""
        if isinstance(self.model, (fast.OptimizedModel, OnnxModel)):
            return self.model.device
        return next(self.model.parameters()).device

    def logits_to_probs(self, logits: Tensor) -> Tensor:
        """(N, num_outputs) logits -> (N, len(class_names)) softmax over this member's classes only
        (outputs before `label_offset`, such as a background class, are dropped)."""
        first = self.preprocess.label_offset
        return logits[:, first:first + len(self.class_names)].float().softmax(dim=1)

    @torch.inference_mode()
    def crop_probabilities(self, crops: Tensor, max_batch: int) -> Tensor:
        """(B, K, C, H, W) crops of B images -> (B, classes) softmax averaged over each image's K crops.

        The B*K crops go through the model in chunks of at most `max_batch`, keeping memory bounded.
        """
        b, k = crops.shape[:2]
        flat = crops.flatten(0, 1)
        probs = [self.logits_to_probs(self.model(chunk.to(self.device, non_blocking=True))).cpu()
                 for chunk in flat.split(max(1, max_batch))]
        return torch.cat(probs).view(b, k, -1).mean(dim=1)


def load_member(source: str | os.PathLike | LoadedModel, device: torch.device, optimize: bool = True,
                precision: str = "auto", sample: Callable[[], Tensor | None] = lambda: None) -> Member:
    """A model `inceptionnet.artifacts.load_model` takes (a checkpoint with EMA weights when it has them, a run
    folder, a .safetensors, an .onnx, a weights tag; or what it returned), without aux heads, in eval mode on
    `device`.

    With `optimize`, the network is `inceptionnet.optimize`'s inference graph (BN folded, sibling 1x1
    convolutions merged, default backend) in `precision` (see `accelerate`). Without it, the plain fp32
    model (for hooks and gradients).
    An .onnx file stays an onnxruntime session on the CPU, its precision the file's; `device`, `optimize` and
    `precision` do not apply to it.
    """
    loaded = source if isinstance(source, LoadedModel) else artifacts.load_model(source)
    if loaded.kind == "onnx":
        return Member(loaded.source, loaded.model, loaded.preprocess, loaded.class_names,
                      Precision(loaded.meta["precision"], "cpu", "as written in the ONNX file"))
    member = Member(loaded.source, loaded.model.to(device).eval(), loaded.preprocess, loaded.class_names,
                    Precision("fp32", device.type, "plain model"))
    if optimize:
        return accelerate(member, precision, sample)
    if precision not in ("auto", "fp32"):
        raise ConfigError(f"--precision {precision} runs on the fused inference graph: drop --no-optimize")
    return member


def accelerate(member: Member, precision: str = "auto", sample: Callable[[], Tensor | None] = lambda: None,
               images: int = 0) -> Member:
    """`member` with its plain network replaced by `inceptionnet.optimize`'s inference graph, traced at the
    checkpoint's own input size, in the precision that `--precision` resolves to on its device
    (`inceptionnet.runtime.choose_inference_precision`; `sample()` gives real (N, C, S, S) inputs to measure
    `auto` on), compiled when the job of `images` inputs pays back the compilation
    (`inceptionnet.runtime.choose_inference_backend`; the choice and its reason go in the precision's
    `measured`). An ONNX member is returned as it is: its graph and precision are the file's."""
    if isinstance(member.model, OnnxModel):
        return member
    size = member.preprocess.input_size
    example = torch.randn(1, getattr(member.model, "in_chans", 3), size, size)
    chosen, model = choose_inference_precision(
        precision, member.device,
        lambda dtype: fast.optimize(member.model, dtype=dtype, example_input=example), sample)
    name = getattr(getattr(member.model, "spec", None), "name", type(member.model).__name__)
    backend, why = choose_inference_backend(chosen, name, images, lambda: _eager_ms_per_image(chosen, model, sample))
    if backend == "compile":
        model = fast.optimize(member.model, backend="compile", dtype=chosen.dtype, example_input=example)
    chosen.measured.update(backend=backend, backend_reason=why)
    return dataclasses.replace(member, model=model, precision=chosen)


def _eager_ms_per_image(chosen: Precision, model: nn.Module, sample: Callable[[], Tensor | None]) -> float:
    """Milliseconds an image of the eager `model`: from the precision's own measurement when `auto` made one,
    else timed on `sample()`."""
    if f"{chosen.name}_ms" in chosen.measured:
        return chosen.measured[f"{chosen.name}_ms"] / chosen.measured["batch"]
    x = sample()
    if x is None:
        return float("inf")  # nothing to time on: never worth compiling for
    x = x.to(model.device)
    with torch.inference_mode():
        return median_ms(lambda: model(x)) / x.shape[0]


def check_same_classes(members: Sequence[Member]) -> list[str]:
    """The class names shared by all `members`; a ConfigError naming the first checkpoint that differs."""
    names = members[0].class_names
    for m in members[1:]:
        if m.class_names != names:
            shown = ", ".join(m.class_names[:5]) + (", ..." if len(m.class_names) > 5 else "")
            raise ConfigError(f"--ensemble: {m.source} predicts {len(m.class_names)} classes ({shown}) which do "
                              f"not match the {len(names)} classes of {members[0].source}")
    return list(names)


def load_members(checkpoints: Sequence[str | os.PathLike | LoadedModel], device: torch.device,
                 optimize: bool = True, precision: str = "auto") -> list[Member]:
    """Load every checkpoint of an ensemble (each as `load_member` does, `optimize` and `precision`
    included) and check that they predict the same classes, in the same order."""
    members = [load_member(path, device, optimize, precision) for path in checkpoints]
    check_same_classes(members)
    return members


def average_probabilities(per_model: Sequence[Tensor]) -> Tensor:
    """Mean of M (N, C) probability tensors: the ensemble's (N, C) prediction (still rows summing to 1)."""
    return torch.stack(list(per_model)).mean(dim=0)
