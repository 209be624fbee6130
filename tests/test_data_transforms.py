"""Transforms: parity with torchvision's eval pipeline, the reduced-size training decode, every augmentation."""

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image
from torchvision import transforms as T

from inceptionnet.data import transforms
from inceptionnet.data.images import open_image
from inceptionnet.data.transforms import (
    TrainAugment,
    build_eval_transform,
    build_train_transform,
    random_resized_box,
    to_model_input,
)
from inceptionnet.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocess

PRE = Preprocess()


def natural_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients and waves plus mild noise: compresses like a photo."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [128 + 90 * np.sin(2 * np.pi * (k + 1.5) * xx + k) * np.cos(2 * np.pi * yy * (2 + k)) for k in range(3)]
    pixels = np.stack(channels, -1) + rng.normal(0, 3, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def decoded_shapes(monkeypatch) -> list[tuple[tuple[int, ...], bool]]:
    """Record (array shape, fast mode) for each JPEG decoded by simplejpeg from here on."""
    calls = []
    decode = simplejpeg.decode_jpeg

    def spy(data, colorspace, **options):
        pixels = decode(data, colorspace, **options)
        calls.append((pixels.shape, options["fastupsample"]))
        return pixels

    monkeypatch.setattr(simplejpeg, "decode_jpeg", spy)
    return calls


def saved(tmp_path, img: Image.Image, name: str = "img.jpg", **options) -> str:
    path = tmp_path / name
    img.save(path, **options)
    return str(path)


def test_to_model_input_scales_orders_and_normalises():
    image = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2)
    rgb = to_model_input(image, PRE)
    expected = [(v / 255 - m) / s for v, m, s in zip((0, 51, 255), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert rgb.dtype == torch.float32 and torch.allclose(rgb[:, 0, 0], torch.tensor(expected))
    caffe = Preprocess(mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0), input_range=255.0, channel_order="BGR")
    bgr = to_model_input(image.unsqueeze(0), caffe)  # a batch works too
    assert bgr.shape == (1, 3, 2, 2)
    assert torch.allclose(bgr[0, :, 0, 0], torch.tensor([255 - 104.0, 51 - 117.0, -123.0]))


@pytest.mark.parametrize("size, crop_pct", [(224, 0.875), (299, 299 / 342)])
def test_eval_transform_matches_torchvision(tmp_path, size, crop_pct):
    path = saved(tmp_path, natural_image(500, 375), quality=90)
    pre = Preprocess(input_size=size, crop_pct=crop_pct, interpolation="bilinear")
    reference = T.Compose(
        [T.Resize(round(size / crop_pct)), T.CenterCrop(size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    ours = build_eval_transform(pre)(open_image(path))
    theirs = reference(Image.open(path).convert("RGB"))
    assert ours.shape == (3, size, size)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_random_resized_box_respects_scale_ratio_and_bounds():
    torch.manual_seed(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_box(500, 375, (0.08, 1.0), (3 / 4, 4 / 3))
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 500 and 0 <= top < bottom <= 375
        assert 0.07 <= w * h / (500 * 375) <= 1.0
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02
    # An impossible aspect falls back to the largest central crop within the ratio range.
    assert random_resized_box(1000, 100, (0.99, 1.0), (1.0, 1.0)) == (450, 0, 550, 100)


def test_reduced_decode_matches_a_full_decode_and_resize(tmp_path, monkeypatch):
    img = natural_image(1024, 768)
    path = saved(tmp_path, img, quality=92)
    whole = TrainAugment(scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3), hflip=False)
    transform = build_train_transform(whole, PRE, 96)
    calls = decoded_shapes(monkeypatch)
    ours = transform(open_image(path))
    assert calls == [((96, 128, 3), True)], "fast decode at 1/8 scale: 128 >= 96 and 96 >= 96"
    full = Image.open(path).convert("RGB").resize((96, 96), Image.Resampling.BILINEAR)
    reference = to_model_input(torch.from_numpy(np.array(full)).permute(2, 0, 1), PRE)
    difference = (ours - reference).abs() * 0.226 * 255  # back to pixel levels
    assert difference.mean() < 2.5 and difference.max() < 40


def test_train_crops_decode_fast_close_to_an_exact_decode_and_evaluation_stays_exact(tmp_path, monkeypatch):
    path = saved(tmp_path, natural_image(500, 375), quality=90)
    transform = build_train_transform(TrainAugment(hflip=False), PRE, 224)
    calls = decoded_shapes(monkeypatch)
    fast = []
    for seed in range(5):
        torch.manual_seed(seed)
        fast.append(transform(open_image(path)))
    assert [fast_mode for _, fast_mode in calls] == [True] * 5
    exact_decode = transforms.decode_to_tensor
    monkeypatch.setattr(transforms, "decode_to_tensor", lambda img, scale, fast: exact_decode(img, scale))
    for seed in range(5):
        torch.manual_seed(seed)  # the same crop, decoded exactly
        difference = (fast[seed] - transform(open_image(path))).abs() * 0.226 * 255  # back to pixel levels
        assert difference.mean() < 1.0
    calls.clear()
    build_eval_transform(PRE)(open_image(path))
    assert calls == [], "evaluation decodes with Pillow, pixel for pixel as the reference pipelines"


def test_train_transform_flips_half_the_time_and_repeats_with_a_seed(tmp_path):
    path = saved(tmp_path, natural_image(64, 64), name="a.png")
    transform = build_train_transform(TrainAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0)), PRE, 32)
    torch.manual_seed(1)
    outputs = [transform(open_image(path)) for _ in range(20)]
    plain = [o for o in outputs if torch.equal(o, outputs[0])]
    mirrored = [o for o in outputs if torch.equal(o, outputs[0].flip(-1))]
    assert len(plain) + len(mirrored) == 20 and plain and mirrored
    torch.manual_seed(1)
    assert all(torch.equal(transform(open_image(path)), o) for o in outputs)


@pytest.mark.parametrize(
    "aug",
    [
        TrainAugment(),
        TrainAugment(photometric=1.0, random_interpolation=True),
        TrainAugment(pad_crop=4),
        TrainAugment(resize_only=True),
    ],
)
def test_train_transform_shapes_including_images_smaller_than_the_crop(tmp_path, aug):
    transform = build_train_transform(aug, PRE, 40)
    for width, height in ((300, 200), (20, 30)):
        path = saved(tmp_path, natural_image(width, height), quality=90)
        out = transform(open_image(path))
        assert out.shape == (3, 40, 40) and out.dtype == torch.float32 and torch.isfinite(out).all()
    uint8 = type(transform)(aug, PRE, 40, normalize=False)(Image.open(path))
    assert uint8.dtype == torch.uint8 and uint8.is_contiguous(), "planar, as batches stack fastest"


def test_resize_only_is_a_plain_resize(tmp_path):
    img = natural_image(90, 60)
    path = saved(tmp_path, img, name="a.png")
    out = build_train_transform(TrainAugment(resize_only=True, photometric=1.0), PRE, 30)(open_image(path))
    expected = torch.from_numpy(np.array(img.resize((30, 30), Image.Resampling.BILINEAR))).permute(2, 0, 1)
    assert torch.equal(out, to_model_input(expected, PRE))


def test_pad_crop_shifts_the_image_by_at_most_the_padding():
    img = Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8))
    transform = build_train_transform(TrainAugment(pad_crop=4, hflip=False), Preprocess(), 32)
    transform.normalize = False
    zero_columns = set()
    for _ in range(30):
        out = transform(img)
        border = (out[0] == 0).all(0).sum().item()  # fully padded columns
        assert border <= 4
        zero_columns.add(border)
    assert len(zero_columns) > 1


def test_photometric_changes_colours_but_stays_valid(tmp_path):
    path = saved(tmp_path, natural_image(64, 64), name="a.png")
    plain = TrainAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=False)
    jitter = TrainAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=False, photometric=1.0)
    base = build_train_transform(plain, PRE, 32)(open_image(path))
    jittered = build_train_transform(jitter, PRE, 32)(open_image(path))
    assert not torch.equal(base, jittered)
    extremes = to_model_input(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 2).expand(3, 1, 2), PRE)
    low, high = extremes[:, 0, 0], extremes[:, 0, 1]
    assert (jittered >= low.view(3, 1, 1) - 1e-5).all() and (jittered <= high.view(3, 1, 1) + 1e-5).all()


def test_exif_rotation_reaches_the_model_input(tmp_path, monkeypatch):
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, 40:] = 255
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to display: the right (white) half goes on top
    path = tmp_path / "r.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())
    calls = decoded_shapes(monkeypatch)
    transform = build_train_transform(TrainAugment(resize_only=True), PRE, 32)
    transform.normalize = False
    out = transform(open_image(path)).float().mean(0)
    assert out.shape == (32, 32) and out[:14].mean() > 235 and out[18:].mean() < 20
    assert calls == [((40, 80, 3), False)], "decoded as stored by libjpeg-turbo, turned as a tensor"
    # A random crop is drawn on the upright image: its top part is still white, its bottom black.
    transform = build_train_transform(TrainAugment(scale=(0.9, 1.0), ratio=(0.5, 0.5), hflip=False), PRE, 16)
    transform.normalize = False
    out = transform(open_image(path)).float().mean(0)
    assert out[:6].mean() > 235 and out[10:].mean() < 20 and calls[-1][1]
