"""Training and evaluation transforms: PIL image in, model input tensor out.

Pixels stay uint8 until `to_model_input`, the only float step. The training crop is chosen from the
header size before any pixel is decoded, so a JPEG whose crop is at least twice the output size is
decoded at 1/2, 1/4 or 1/8 scale. JPEGs are decoded by libjpeg-turbo (simplejpeg) straight into a
tensor, in its fast mode when augmenting, their EXIF orientation applied to the tensor. The crop and
resize are then one antialiased resample of the uint8 tensor (PIL's for the box filter, which torch
lacks). Evaluation decodes exactly, with PIL, as the reference pipelines do. Our transforms set
`takes_lazy_image = True`: `ImageDataset` then hands them the header-only image. bench/data.py
measures the gain over torchvision's ImageFolder.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms import functional as F

from ..errors import ConfigError
from ..models.registry import Preprocess
from .images import decode_image, decode_to_tensor, draft_scale, oriented_size

PIL_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "area": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
TENSOR_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}
# GoogLeNet drew the resize interpolation at random from these (area = box filter).
GOOGLENET_RESAMPLES = ("bilinear", "box", "nearest", "bicubic")
_RRC_ATTEMPTS = 10

Box = tuple[float, float, float, float]


@dataclass
class TrainAugment:
    """Training augmentation settings.

    scale/ratio: area fraction and aspect range of the random-resized crop. hflip: mirror half the
    images. photometric: strength of brightness/contrast/saturation/hue jitter (0 = off, 1 = 0.4/0.4/0.4/0.1).
    random_interpolation: draw the resize filter from bilinear/area/nearest/bicubic (GoogLeNet).
    pad_crop: CIFAR style, pad by N pixels then take a random img_size crop (replaces the resized crop).
    resize_only: plain resize to img_size x img_size, no augmentation at all.
    auto_augment: "trivial" (TrivialAugmentWide) or "randaugment" (RandAugment) on the uint8 crop, "none" off.
    random_erasing: probability of erasing a random rectangle of the normalised image (RandomErasing, value 0).
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    photometric: float = 0.0
    random_interpolation: bool = False
    pad_crop: int = 0
    resize_only: bool = False
    auto_augment: str = "none"
    random_erasing: float = 0.0


AUTO_AUGMENT_POLICIES = {"none": None, "trivial": v2.TrivialAugmentWide, "randaugment": v2.RandAugment}


def resample_filter(name: str) -> Image.Resampling:
    """The PIL filter for an interpolation name (bilinear, bicubic, nearest, box/area, hamming, lanczos)."""
    try:
        return PIL_RESAMPLE[name]
    except KeyError:
        raise ConfigError(f"unknown interpolation {name!r}; known: {', '.join(PIL_RESAMPLE)}") from None


def to_model_input(image: Tensor, preprocess: Preprocess) -> Tensor:
    """uint8 (..., 3, H, W) in RGB -> float32 on the model's scale (input_range), channel order, mean/std.

    Works on one image (C, H, W) or a batch (N, C, H, W). `preprocess.mean/std` are listed in the
    model's channel order.
    """
    if preprocess.channel_order == "BGR":
        image = image.flip(-3)
    elif preprocess.channel_order != "RGB":
        raise ConfigError(f"unknown channel order {preprocess.channel_order!r}; expected RGB or BGR")
    offset, scale = _normalisation(preprocess)
    # Contiguous first: decoders and resizers may hand over channels-last strides, which make this 5x slower.
    image = image.to(torch.float32, memory_format=torch.contiguous_format)
    return image.mul_(scale.to(image.device)).add_(offset.to(image.device))


@functools.lru_cache(maxsize=16)
def _normalisation(preprocess: Preprocess) -> tuple[Tensor, Tensor]:
    """(offset, scale) with x * (range / 255) / std - mean / std = offset + x * scale, as (3, 1, 1) tensors."""
    std = torch.tensor(preprocess.std, dtype=torch.float32).view(3, 1, 1)
    mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(3, 1, 1)
    return -mean / std, (preprocess.input_range / 255.0) / std


def random_resized_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float]) -> Box:
    """A random (left, top, right, bottom) crop of `scale` of the area and aspect within `ratio`.

    The algorithm of torchvision's RandomResizedCrop (10 tries, then a central crop), on torch's RNG.
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(_RRC_ATTEMPTS):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = torch.randint(0, height - h + 1, (1,)).item()
            left = torch.randint(0, width - w + 1, (1,)).item()
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def scale_box(box: Box, full_size: tuple[int, int], decoded_size: tuple[int, int]) -> Box:
    """`box` on an image of `full_size` (width, height) mapped onto the same image decoded at `decoded_size`."""
    fx, fy = decoded_size[0] / full_size[0], decoded_size[1] / full_size[1]
    left, top, right, bottom = box
    return left * fx, top * fy, right * fx, bottom * fy


def resized_crop(image: Tensor, box: Box, size: int, interpolation: InterpolationMode) -> Tensor:
    """Crop (3, H, W) uint8 `image` to `box` (rounded to whole pixels) and resize it to (size, size), antialiased.

    The result is usually in channels-last memory (see `planar`).
    """
    height, width = image.shape[-2:]
    left, top = min(round(box[0]), width - 1), min(round(box[1]), height - 1)
    crop_width = min(max(1, round(box[2] - box[0])), width - left)
    crop_height = min(max(1, round(box[3] - box[1])), height - top)
    if (left, top, crop_width, crop_height) == (0, 0, size, size) == (0, 0, width, height):
        return image
    crop = image[:, top : top + crop_height, left : left + crop_width]
    # Packed into contiguous interleaved (channels-last) pixels, torch's uint8 resampler writes its output
    # in that layout too, instead of repacking it into planes: a third less time than on the strided crop.
    crop = crop.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    return v2.functional.resize(crop, [size, size], interpolation=interpolation, antialias=True)


def planar(image: Tensor) -> Tensor:
    """uint8 (C, H, W) `image` in contiguous (planar) memory, which batches stack fastest."""
    if image.is_contiguous():
        return image
    # numpy's transposing copy of interleaved uint8 pixels is about twice as fast as torch's.
    return torch.from_numpy(np.ascontiguousarray(image.numpy()))


class TrainTransform:
    """Random crop (or pad-crop / plain resize), flip and photometric jitter: PIL image -> model input."""

    takes_lazy_image = True

    def __init__(self, aug: TrainAugment, preprocess: Preprocess, img_size: int, normalize: bool = True) -> None:
        self.aug = aug
        self.preprocess = preprocess
        self.img_size = img_size
        self.normalize = normalize
        resample_filter(preprocess.interpolation)  # an unknown name fails here, not in a worker
        self.jitter = None
        if aug.photometric > 0:
            level = 0.4 * aug.photometric
            self.jitter = v2.ColorJitter(brightness=level, contrast=level, saturation=level, hue=min(level / 4, 0.5))
        if aug.auto_augment not in AUTO_AUGMENT_POLICIES:
            raise ConfigError(f"unknown auto_augment {aug.auto_augment!r}; known: {', '.join(AUTO_AUGMENT_POLICIES)}")
        policy = AUTO_AUGMENT_POLICIES[aug.auto_augment]
        self.policy = policy() if policy is not None else None
        self.erasing = v2.RandomErasing(p=aug.random_erasing, value=0) if aug.random_erasing > 0 else None

    def _interpolation(self) -> str:
        if self.aug.random_interpolation:
            return GOOGLENET_RESAMPLES[torch.randint(len(GOOGLENET_RESAMPLES), (1,)).item()]
        return self.preprocess.interpolation

    def _crop_and_resize(self, img: Image.Image) -> Tensor:
        """Decode `img` as small as the crop allows; the crop resized to img_size, uint8 (3, S, S), any strides."""
        full_size = oriented_size(img)
        if self.aug.resize_only or self.aug.pad_crop:
            box: Box = (0, 0, *full_size)
        else:
            box = random_resized_box(*full_size, self.aug.scale, self.aug.ratio)
        scale = draft_scale(box[2] - box[0], box[3] - box[1], self.img_size, self.img_size)
        interpolation = self._interpolation()
        if interpolation in TENSOR_INTERPOLATION:
            # Resizing the uint8 tensor (torch's vectorised antialiased kernels) is about twice as fast as PIL.
            # The fast decode (a fraction of a grey level off, unbiased) is noise next to the augmentation;
            # without any augmentation (resize_only) the pixels stay exact, as in evaluation.
            image = decode_to_tensor(img, scale, fast=not self.aug.resize_only)
            box = scale_box(box, full_size, (image.shape[-1], image.shape[-2]))
            return resized_crop(image, box, self.img_size, TENSOR_INTERPOLATION[interpolation])
        decoded = decode_image(img, scale)  # the box (area) filter and others only PIL has
        box = scale_box(box, full_size, decoded.size)
        return F.pil_to_tensor(decoded.resize((self.img_size, self.img_size), resample_filter(interpolation), box=box))

    def __call__(self, img: Image.Image) -> Tensor:
        """PIL image (header-only or decoded) -> (3, img_size, img_size) model input (uint8 if normalize=False)."""
        image = self._crop_and_resize(img)
        augment = not self.aug.resize_only
        if augment and self.aug.pad_crop:
            image = _pad_random_crop(image, self.aug.pad_crop)
        if augment and self.aug.hflip and torch.rand(1).item() < 0.5:
            image = image.flip(-1)
        if augment and self.jitter is not None:
            image = self.jitter(image)
        if augment and self.policy is not None:
            image = self.policy(image)
        # Either way the channels-last pixels of the resize become planar in the one copy that is needed.
        if not self.normalize:
            return planar(image)
        image = to_model_input(image, self.preprocess)
        # Erased after normalising, so the rectangle holds the mean colour (0), as in timm and torchvision.
        return self.erasing(image) if augment and self.erasing is not None else image


def _pad_random_crop(image: Tensor, pad: int) -> Tensor:
    """Zero-pad (C, H, W) by `pad` on every side and take a random (H, W) crop (the CIFAR augmentation)."""
    _, height, width = image.shape
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (1,)).item()
    left = torch.randint(0, 2 * pad + 1, (1,)).item()
    return padded[:, top : top + height, left : left + width]


def _interpolation_mode(name: str) -> InterpolationMode:
    resample_filter(name)  # one error message for unknown names
    return InterpolationMode("box" if name == "area" else name)


def eval_resize_size(input_size: int, crop_pct: float) -> int:
    """Shorter side before the centre crop: `input_size / crop_pct` rounded down (timm's convention); the
    epsilon keeps 299 / (299 / 342) at 342."""
    return int(math.floor(input_size / crop_pct + 1e-6))


class EvalTransform:
    """Resize the shorter side to img_size / crop_pct, centre crop img_size: PIL image -> model input.

    The decode (full size), resize and crop are torchvision's PIL ones, antialiased, so accuracy matches
    the reference pipelines pixel for pixel.
    """

    takes_lazy_image = True

    def __init__(self, preprocess: Preprocess, img_size: int | None = None) -> None:
        self.preprocess = preprocess
        self.img_size = img_size or preprocess.input_size
        self.resize_size = eval_resize_size(self.img_size, preprocess.crop_pct)
        self.interpolation = _interpolation_mode(preprocess.interpolation)

    def __call__(self, img: Image.Image) -> Tensor:
        """PIL image (header-only or decoded) -> (3, img_size, img_size) model input."""
        decoded = decode_image(img)
        decoded = F.resize(decoded, self.resize_size, interpolation=self.interpolation, antialias=True)
        decoded = F.center_crop(decoded, [self.img_size, self.img_size])
        return to_model_input(F.pil_to_tensor(decoded), self.preprocess)


def build_train_transform(aug: TrainAugment, preprocess: Preprocess, img_size: int) -> TrainTransform:
    """The training transform for `aug`: PIL image -> float (3, img_size, img_size) model input."""
    return TrainTransform(aug, preprocess, img_size)


def build_eval_transform(preprocess: Preprocess, img_size: int | None = None) -> EvalTransform:
    """The evaluation transform: shorter side to img_size / crop_pct, centre crop, `to_model_input`.

    `img_size=None` uses `preprocess.input_size`. PIL image -> float (3, img_size, img_size).
    """
    return EvalTransform(preprocess, img_size)
