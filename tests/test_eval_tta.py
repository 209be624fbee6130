"""Crop geometry of the test-time augmentation modes, on images whose pixels encode their position."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from inceptionnet import ConfigError, Preprocess
from inceptionnet.data.transforms import build_eval_transform
from inceptionnet.evaluate.tta import (
    MultiCropTransform,
    crop_plan,
    googlenet_scales,
    render_crops,
    resized_shape,
)

SIZE = 32
PRE = Preprocess(input_size=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=0.875)


def position_image(width: int, height: int) -> Image.Image:
    """Red grows left to right, green top to bottom: a crop's mean colour tells where it came from."""
    x = (np.arange(width) + 0.5) / width * 255
    y = (np.arange(height) + 0.5) / height * 255
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = np.round(x)[None, :]
    rgb[..., 1] = np.round(y)[:, None]
    return Image.fromarray(rgb, "RGB")


def expected_centre(crop, width: int, height: int) -> tuple[float, float]:
    """Mean red and green of the region `crop` covers, from the geometry alone (the ramps are linear)."""
    h, w = resized_shape(height, width, crop.short_side)
    cx = (crop.left + crop.size / 2) / w
    cy = (crop.top + crop.size / 2) / h
    return 255 * cx, 255 * cy


def mean_colour(crop: torch.Tensor) -> tuple[float, float]:
    c = crop.float()
    return float(c[0].mean()), float(c[1].mean())


@pytest.mark.parametrize("width,height", [(160, 112), (112, 160)], ids=["landscape", "portrait"])
@pytest.mark.parametrize("mode,count", [("center", 1), ("10crop", 10), ("144crop", 144)])
def test_crops_come_from_their_planned_positions(mode, count, width, height):
    image = position_image(width, height)
    plan = crop_plan(mode, height, width, SIZE, PRE.crop_pct)
    crops = render_crops(image, plan, SIZE)
    assert crops.shape == (count, 3, SIZE, SIZE) and crops.dtype == torch.uint8
    for crop, pixels in zip(plan, crops, strict=True):
        red, green = mean_colour(pixels)
        want_red, want_green = expected_centre(crop, width, height)
        assert abs(red - want_red) < 3 and abs(green - want_green) < 3, crop
        # Mirroring reverses the red ramp: the left column of a mirrored crop is the redder one.
        left_red, right_red = pixels[0, :, 0].float().mean(), pixels[0, :, -1].float().mean()
        assert (left_red > right_red) == crop.flip


@pytest.mark.parametrize("width,height", [(160, 112), (112, 160), (120, 120)], ids=["landscape", "portrait", "square"])
def test_144_crops_follow_googlenet(width, height):
    plan = crop_plan("144crop", height, width, SIZE, PRE.crop_pct)
    assert len(plan) == 144 and sum(c.flip for c in plan) == 72
    scales = googlenet_scales(SIZE)
    assert scales == [round(s * SIZE / 224) for s in (256, 288, 320, 352)]
    assert sorted({c.short_side for c in plan}) == sorted(scales)
    for short in scales:
        h, w = resized_shape(height, width, short)
        squares = [c for c in plan if c.short_side == short and c.size == short and not c.flip]
        assert len(squares) == 3  # left/centre/right (top/centre/bottom), each also resized whole
        offsets = sorted(c.left if w >= h else c.top for c in squares)
        free = max(h, w) - short
        assert offsets == [0, round(free / 2), free]
        assert all((c.top if w >= h else c.left) == 0 for c in squares)
        corner_crops = [c for c in plan if c.short_side == short and c.size == SIZE and not c.flip]
        assert len(corner_crops) == 15
        # Every crop lies inside the resized image.
        assert all(0 <= c.top and c.top + c.size <= h and 0 <= c.left and c.left + c.size <= w for c in plan
                   if c.short_side == short)
    # The second half mirrors the first, crop for crop.
    image = position_image(width, height)
    crops = render_crops(image, plan, SIZE)
    assert torch.equal(crops[72:], crops[:72].flip(-1))


def test_ten_crop_matches_torchvision():
    image = position_image(150, 101)
    plan = crop_plan("10crop", image.height, image.width, SIZE, PRE.crop_pct)
    resized = TF.resize(image, plan[0].short_side, antialias=True)
    expected = torch.stack([TF.pil_to_tensor(c) for c in TF.ten_crop(resized, [SIZE, SIZE])])
    assert torch.equal(render_crops(image, plan, SIZE), expected)


def test_center_matches_the_training_eval_transform():
    image = position_image(150, 101)
    transform = MultiCropTransform("center", PRE)
    plan = crop_plan("center", image.height, image.width, SIZE, PRE.crop_pct)
    expected = build_eval_transform(PRE)(image)
    assert torch.equal(transform(image)[0], expected)
    assert torch.allclose(render_crops(image, plan, SIZE).float()[0] / 255, expected)


@pytest.mark.parametrize("mode,count", [("center", 1), ("10crop", 10), ("144crop", 144)])
def test_transform_gives_normalised_crops(mode, count):
    pre = Preprocess(input_size=SIZE, channel_order="BGR")
    out = MultiCropTransform(mode, pre)(position_image(90, 70))
    assert out.shape == (count, 3, SIZE, SIZE) and out.dtype == torch.float32
    # ImageNet normalisation of [0, 1] pixels stays within about [-2.2, 2.7].
    assert out.min() >= -2.2 and out.max() <= 2.7


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="--tta"):
        MultiCropTransform("5crop", PRE)
