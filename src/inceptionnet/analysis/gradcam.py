"""Grad-CAM (Selvaraju et al. 2017) on the last convolutional stage of any registered model.

The stage is found by running the model once with hooks: the last module to produce a spatial
(N, C, h, w) map with h*w > 1 before global pooling, i.e. the last Inception block (or the container
ending with it). The heatmap is ReLU(sum_c mean(dScore/dA_c) * A_c), upsampled to the input and
normalised to [0, 1] per image.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..models.registry import Preprocess

# Modules that only pool, flatten or drop: a spatial output from them is not a feature stage.
_NOT_A_STAGE = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d, nn.Flatten,
                nn.Identity)


def find_cam_layer(model: nn.Module, x: Tensor) -> str:
    """Dotted name of the module of `model` that last outputs a spatial map for the (N, C, H, W) input `x`.

    Forward hooks fire when a module finishes, so a container ending with the last block comes after
    that block and is picked instead; either yields the same map.
    """
    finished: list[str] = []

    def record(name: str):
        def hook(module, inputs, output):
            if isinstance(output, Tensor) and output.dim() == 4 and output.shape[-2] * output.shape[-1] > 1:
                finished.append(name)
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules()
               if name and not isinstance(m, _NOT_A_STAGE)]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    if not finished:
        raise ValueError(f"{type(model).__name__} produces no spatial feature map for input {tuple(x.shape)}")
    return finished[-1]


class GradCAM:
    """Class-activation heatmaps of `model` (eval mode) from the gradients at `layer` (a dotted module
    name; found with `find_cam_layer` on the first call when None)."""

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        self.model = model
        self.layer = layer

    def __call__(self, x: Tensor, target: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) input -> (heatmaps (N, H, W) in [0, 1], logits (N, classes)).

        `target` (N,) picks the class explained per image; default the predicted class.
        """
        if self.layer is None:
            self.layer = find_cam_layer(self.model, x)
        saved: dict[str, Tensor] = {}

        def keep(module, inputs, output):
            # Cloned: a later in-place op (ReLU after a residual sum) must not change the stored map.
            saved["activation"] = output.detach().clone()
            output.register_hook(lambda grad: saved.__setitem__("gradient", grad.detach()))

        handle = self.model.get_submodule(self.layer).register_forward_hook(keep)
        try:
            with torch.enable_grad():
                logits = self.model(x.detach().clone().requires_grad_(True))
                chosen = logits.argmax(dim=1) if target is None else target.to(logits.device)
                logits.gather(1, chosen[:, None]).sum().backward()
        finally:
            handle.remove()
            self.model.zero_grad(set_to_none=True)
        weights = saved["gradient"].mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * saved["activation"]).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
        return normalize_per_image(cam), logits.detach()


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
