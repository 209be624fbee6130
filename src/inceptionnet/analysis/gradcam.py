"""Grad-CAM (Selvaraju et al. 2017) on the last convolutional stage of any registered model.

The last stage's output is found without knowing the architecture: it is the feature map that the
global pooling consumes, i.e. the input of the last spatial reduction (adaptive/average/max pooling
or a mean) that leaves no spatial extent. A `TorchFunctionMode` watches those calls during the
forward pass and hooks the gradient of that tensor. The heatmap is ReLU(sum_c mean(dScore/dA_c) * A_c),
upsampled to the input and normalised to [0, 1] per image.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..models.registry import Preprocess

# Operations that can be a global pooling; which call is the global one is decided by the shapes.
_REDUCTIONS = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices", "avg_pool2d",
               "max_pool2d", "max_pool2d_with_indices", "mean", "amax"}


class _FinalFeatureMap(TorchFunctionMode):
    """Remembers the input of the last global pooling ((N, C, h, w) -> (N, C) or (N, C, 1, 1)) and its gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.activation: Tensor | None = None
        self.gradient: Tensor | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        x = args[0] if args else None
        if (getattr(func, "__name__", "") in _REDUCTIONS and isinstance(x, Tensor) and isinstance(out, Tensor)
                and x.dim() == 4 and out.shape[:2] == x.shape[:2] and out[0, 0].numel() == 1):
            # Cloned: a later in-place op must not change the stored map.
            self.activation = x.detach().clone()
            if x.requires_grad:
                x.register_hook(self._keep_gradient)
        return out

    def _keep_gradient(self, grad: Tensor) -> None:
        self.gradient = grad.detach()


class GradCAM:
    """Class-activation heatmaps of `model` (eval mode) from the gradients of its last feature map."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, x: Tensor, target: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) input -> (heatmaps (N, H, W) in [0, 1], logits (N, classes)).

        `target` (N,) picks the class explained per image; default the predicted class.
        """
        watch = _FinalFeatureMap()
        try:
            with torch.enable_grad(), _without_tta(self.model):
                with watch:
                    logits = self.model(x.detach().clone().requires_grad_(True))
                chosen = logits.argmax(dim=1) if target is None else target.to(logits.device)
                logits.gather(1, chosen[:, None]).sum().backward()
        finally:
            self.model.zero_grad(set_to_none=True)
        if watch.activation is None or watch.gradient is None:
            raise ValueError(f"{type(self.model).__name__}: no global pooling of a feature map in the forward pass")
        weights = watch.gradient.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * watch.activation).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
        return normalize_per_image(cam), logits.detach()

    @staticmethod
    def feature_map_shape(model: nn.Module, x: Tensor) -> tuple[int, ...]:
        """Shape of the feature map Grad-CAM explains for input `x` (for checks and messages)."""
        watch = _FinalFeatureMap()
        with torch.no_grad(), watch:
            model(x)
        if watch.activation is None:
            raise ValueError(f"{type(model).__name__}: no global pooling of a feature map seen in the forward pass")
        return tuple(watch.activation.shape)


def normalize_per_image(maps: Tensor) -> Tensor:
    """Scale each (H, W) map of (N, H, W) to [0, 1] by its own min and max (all zeros when it is flat)."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    span = (flat.max(dim=1).values[:, None, None] - low)
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def model_input_to_image(x: Tensor, preprocess: Preprocess) -> Image.Image:
    """Undo `to_model_input` on one (C, H, W) input: the RGB picture the model saw, as a PIL image."""
    mean = torch.tensor(preprocess.mean, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(preprocess.std, dtype=x.dtype, device=x.device)[:, None, None]
    pixels = (x * std + mean) / preprocess.input_range
    if preprocess.channel_order.upper() == "BGR":
        pixels = pixels.flip(0)
    array = (pixels.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def overlay(image: Image.Image, heatmap: Tensor, alpha: float = 0.45) -> Image.Image:
    """Blend a (H, W) heatmap in [0, 1] (jet colours) over `image` of the same size."""
    from matplotlib import colormaps

    colours = colormaps["jet"](heatmap.detach().cpu().numpy())[..., :3]
    heat = Image.fromarray((colours * 255).round().astype("uint8"), "RGB")
    return Image.blend(image.convert("RGB"), heat.resize(image.size), alpha)


def save_overlay(image: Image.Image, heatmap: Tensor, path: str | os.PathLike) -> Path:
    """Write `overlay(image, heatmap)` as a PNG to `path` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay(image, heatmap).save(path, format="PNG")
    return path


@contextlib.contextmanager
def _without_tta(model: nn.Module):
    """A model that averages each image's logits over augmented views (`tta`) runs without them: the map
    explains the image itself, and the feature map then holds one entry per image."""
    tta = getattr(model, "tta", None)
    if tta is None:
        yield
        return
    model.tta = "none"
    try:
        yield
    finally:
        model.tta = tta
