"""Multi-crop test-time augmentation as the papers evaluated: centre crop, TenCrop, GoogLeNet's 144 crops.

The geometry is plain data (`Crop` boxes from `crop_plan`) so it can be checked without a model;
`render_crops` cuts a uint8 image into those crops and `MultiCropTransform` turns a PIL image into
the model-ready (K, C, S, S) batch of one image's crops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import functional as TF

from ..data.transforms import eval_resize_size, resample_filter
from ..errors import ConfigError
from ..models.registry import Preprocess

TTA_MODES = ("center", "10crop", "144crop")
# GoogLeNet's test scales (shorter side) for a 224 input; other input sizes scale them proportionally.
GOOGLENET_SCALES = (256, 288, 320, 352)
GOOGLENET_INPUT = 224

@dataclass(frozen=True)
class Crop:
    """One test crop: resize the image so its shorter side is `short_side`, take the square of side
    `size` whose top-left corner is (`top`, `left`) in that resized image, resize it to the model's
    input size when `size` differs from it, and mirror it left-right when `flip`."""

    short_side: int
    top: int
    left: int
    size: int
    flip: bool = False


def check_mode(mode: str) -> str:
    """Return `mode` if it is a known TTA mode, else raise a ConfigError naming the choices."""
    if mode not in TTA_MODES:
        raise ConfigError(f"--tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    return mode


def crops_per_image(mode: str) -> int:
    """How many crops `mode` takes from each image: 1, 10 or 144."""
    return {"center": 1, "10crop": 10, "144crop": 144}[check_mode(mode)]


def resized_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to `short_side`, keeping the aspect ratio the way
    torchvision's Resize does (the longer side is truncated)."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def _offset(free: int) -> int:
    # Centre offset exactly as torchvision's center_crop computes it.
    return int(round(free / 2.0))


def _five_boxes(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """(top, left) of the four corner crops (tl, tr, bl, br) and the centre crop, torchvision's order."""
    return [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size),
            (_offset(height - size), _offset(width - size))]


def _check_fits(height: int, width: int, size: int) -> None:
    if min(height, width) < size:
        raise ConfigError(f"crop of {size} px does not fit an image resized to {height}x{width}")


def center_plan(height: int, width: int, input_size: int, crop_pct: float) -> list[Crop]:
    """The single centre crop of an (height, width) image: shorter side to input/crop_pct, centre square."""
    short = eval_resize_size(input_size, crop_pct)
    h, w = resized_shape(height, width, short)
    _check_fits(h, w, input_size)
    return [Crop(short, _offset(h - input_size), _offset(w - input_size), input_size)]


def ten_crop_plan(height: int, width: int, input_size: int, crop_pct: float) -> list[Crop]:
    """torchvision's TenCrop at shorter side input/crop_pct: the five crops (tl, tr, bl, br, centre), then
    the five crops of the mirrored image, i.e. mirrors of the original regions reflected left-right."""
    short = eval_resize_size(input_size, crop_pct)
    h, w = resized_shape(height, width, short)
    _check_fits(h, w, input_size)
    boxes = _five_boxes(h, w, input_size)
    plain = [Crop(short, top, left, input_size) for top, left in boxes]
    # A crop at `left` of the mirrored image is the mirror of the original region at w - size - left.
    mirrored = [Crop(short, top, w - input_size - left, input_size, flip=True) for top, left in boxes]
    return plain + mirrored


def googlenet_scales(input_size: int) -> list[int]:
    """GoogLeNet's four test scales (256, 288, 320, 352 for 224) scaled to `input_size`."""
    return [int(round(s * input_size / GOOGLENET_INPUT)) for s in GOOGLENET_SCALES]


def googlenet_144_plan(height: int, width: int, input_size: int) -> list[Crop]:
    """GoogLeNet's 144 test crops (Szegedy et al. 2014, section 7).

    For each of 4 scales (shorter side 256/288/320/352 x input/224): the left, centre and right squares
    (top, centre, bottom for a portrait image); in each, the 4 corner crops and the centre crop of
    `input_size` plus the whole square resized to `input_size`; all of them also mirrored.
    4 x 3 x 6 x 2 = 144 crops, ordered scale, square, crop, then the 72 mirrors in the same order.
    """
    plain = []
    for short in googlenet_scales(input_size):
        h, w = resized_shape(height, width, short)
        _check_fits(h, w, input_size)
        long_free = max(h, w) - short
        for offset in (0, _offset(long_free), long_free):
            top, left = (0, offset) if w >= h else (offset, 0)
            plain += [Crop(short, top + t, left + l, input_size) for t, l in _five_boxes(short, short, input_size)]
            plain.append(Crop(short, top, left, short))
    return plain + [Crop(c.short_side, c.top, c.left, c.size, flip=True) for c in plain]


def crop_plan(mode: str, height: int, width: int, input_size: int, crop_pct: float) -> list[Crop]:
    """The crops `mode` ("center", "10crop" or "144crop") takes from an image of (height, width)."""
    check_mode(mode)
    if mode == "center":
        return center_plan(height, width, input_size, crop_pct)
    if mode == "10crop":
        return ten_crop_plan(height, width, input_size, crop_pct)
    return googlenet_144_plan(height, width, input_size)


def render_crops(image: Image.Image, plan: list[Crop], out_size: int, interpolation: str = "bilinear") -> Tensor:
    """Cut the RGB PIL `image` into the crops of `plan`: a uint8 (K, 3, out_size, out_size) tensor.

    Resizing is PIL's (antialiased), the same as the centre-crop evaluation transform; each scale is
    resized once and shared by all the crops taken from it.
    """
    resample = resample_filter(interpolation)
    resized: dict[int, Image.Image] = {}
    crops = []
    for crop in plan:
        if crop.short_side not in resized:
            height, width = resized_shape(image.height, image.width, crop.short_side)
            resized[crop.short_side] = image.resize((width, height), resample)
        region = resized[crop.short_side].crop((crop.left, crop.top, crop.left + crop.size, crop.top + crop.size))
        if crop.size != out_size:
            region = region.resize((out_size, out_size), resample)
        pixels = TF.pil_to_tensor(region)
        crops.append(pixels.flip(-1) if crop.flip else pixels)
    return torch.stack(crops)


class MultiCropTransform:
    """PIL image -> float (K, C, S, S) model input holding the K test crops of `mode`.

    "center" is exactly the evaluation transform used during training (`build_eval_transform`);
    "10crop" and "144crop" cut the crops with `render_crops` and normalise them with `to_model_input`.
    """

    def __init__(self, mode: str, preprocess: Preprocess, img_size: int | None = None) -> None:
        from ..data.transforms import build_eval_transform

        self.mode = check_mode(mode)
        self.preprocess = preprocess
        self.input_size = img_size or preprocess.input_size
        resample_filter(preprocess.interpolation)  # an unknown name fails here, not in a worker
        self._center: Callable[[Image.Image], Tensor] = build_eval_transform(preprocess, self.input_size)

    @property
    def crops(self) -> int:
        """K, the number of crops per image."""
        return crops_per_image(self.mode)

    def __call__(self, image: Image.Image) -> Tensor:
        if self.mode == "center":
            return self._center(image).unsqueeze(0)
        from ..data.transforms import to_model_input

        image = image.convert("RGB")
        plan = crop_plan(self.mode, image.height, image.width, self.input_size, self.preprocess.crop_pct)
        return to_model_input(render_crops(image, plan, self.input_size, self.preprocess.interpolation),
                              self.preprocess)
