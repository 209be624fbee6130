"""Models evaluated together: each with its own preprocessing, softmax averaged over crops and models."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.registry import Preprocess


def resolve_device(name: str | None = None) -> torch.device:
    """The torch device for `--device` ("cpu", "cuda", "cuda:1", ...); None picks CUDA when available."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a torch device (try cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return device


@dataclass
class Member:
    """One model of an evaluation: the network (eval mode, on its device), how its inputs are made and
    the class names its outputs stand for."""

    source: str
    model: nn.Module
    preprocess: Preprocess
    class_names: list[str]

    @property
    def device(self) -> torch.device:
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


def load_member(checkpoint: str | os.PathLike | dict, device: torch.device) -> Member:
    """Load a checkpoint (a path, or a dict from `load_checkpoint`) with EMA weights when it has them and
    without aux heads, in eval mode on `device`."""
    from ..engine.checkpoint import model_from_checkpoint

    source = str(checkpoint.get("path", "checkpoint")) if isinstance(checkpoint, dict) else str(checkpoint)
    model, preprocess, class_names = model_from_checkpoint(checkpoint)
    return Member(source, model.to(device).eval(), preprocess, class_names)


def check_same_classes(members: Sequence[Member]) -> list[str]:
    """The class names shared by all `members`; a ConfigError naming the first checkpoint that differs."""
    names = members[0].class_names
    for m in members[1:]:
        if m.class_names != names:
            shown = ", ".join(m.class_names[:5]) + (", ..." if len(m.class_names) > 5 else "")
            raise ConfigError(f"--ensemble: {m.source} predicts {len(m.class_names)} classes ({shown}) which do "
                              f"not match the {len(names)} classes of {members[0].source}")
    return list(names)


def load_members(checkpoints: Sequence[str | os.PathLike | dict], device: torch.device) -> list[Member]:
    """Load every checkpoint of an ensemble and check that they predict the same classes, in the same order."""
    members = [load_member(path, device) for path in checkpoints]
    check_same_classes(members)
    return members


def average_probabilities(per_model: Sequence[Tensor]) -> Tensor:
    """Mean of M (N, C) probability tensors: the ensemble's (N, C) prediction (still rows summing to 1)."""
    return torch.stack(list(per_model)).mean(dim=0)
