"""Decoding real files: every bad kind is a BadImageError naming the file; every odd mode becomes RGB."""

import struct
import zlib

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from inceptionnet.data.images import (
    MAX_IMAGE_PIXELS,
    BadImageError,
    decode_image,
    decode_to_tensor,
    load_image,
    open_image,
)
from inceptionnet.errors import DataError


def smooth_image(width: int, height: int) -> Image.Image:
    """A natural-looking RGB image (gradients plus soft waves) whose reductions are well defined."""
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [128 + 100 * np.sin(2 * np.pi * (k + 1) * xx + k) * np.cos(2 * np.pi * yy * (3 - k)) for k in range(3)]
    return Image.fromarray(np.stack(channels, -1).astype(np.uint8), "RGB")


def spy_on_libjpeg_turbo(monkeypatch) -> list[dict]:
    """Record each simplejpeg decode (its keyword arguments and the decoded shape) made through our code."""
    calls = []
    decode = simplejpeg.decode_jpeg

    def spy(data, colorspace, **options):
        pixels = decode(data, colorspace, **options)
        calls.append({**options, "shape": pixels.shape})
        return pixels

    monkeypatch.setattr(simplejpeg, "decode_jpeg", spy)
    return calls


def png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels, with no pixel data (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_open_is_lazy_and_load_gives_rgb(tmp_path):
    path = tmp_path / "a.jpg"
    smooth_image(64, 48).save(path, quality=95)
    img = open_image(path)
    assert img.size == (64, 48) and img.tile, "header read, pixels not decoded yet"
    img.close()
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (64, 48)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"this is a text file, not a picture\n" * 4, "not an image"),
    ],
)
def test_bad_files_raise_bad_image_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadImageError, match=reason) as info:
        load_image(path)
    assert str(path) in str(info.value) and isinstance(info.value, DataError)
    assert info.value.path == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError, match="cannot read file"):
        load_image(tmp_path / "nope.jpg")


def as_array(path, decoder: str) -> np.ndarray:
    """Decode `path` with Pillow (load_image) or to a tensor (torchvision for full-size JPEGs), as (H, W, 3)."""
    if decoder == "pil":
        return np.asarray(load_image(path))
    return decode_to_tensor(open_image(path)).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("decoder", ["pil", "tensor"])
def test_truncated_jpeg_fails_on_decode(tmp_path, decoder):
    path = tmp_path / "cut.jpg"
    smooth_image(200, 150).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:1500])
    open_image(path).close()  # the header is intact
    with pytest.raises(BadImageError, match="truncated") as info:
        as_array(path, decoder)
    assert str(path) in str(info.value)


def test_tensor_decode_matches_pillow(tmp_path):
    path = tmp_path / "a.jpg"
    smooth_image(120, 90).save(path, quality=90)
    tensor = decode_to_tensor(open_image(path))
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, 90, 120)
    difference = np.abs(tensor.permute(1, 2, 0).numpy().astype(int) - np.asarray(load_image(path)).astype(int))
    assert difference.max() <= 2
    assert decode_to_tensor(open_image(path), scale=2).shape == (3, 45, 60)


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_jpegs_decode_with_libjpeg_turbo_at_the_asked_scale_as_pillow_does(tmp_path, monkeypatch, scale):
    path = tmp_path / "a.jpg"
    smooth_image(203, 150).save(path, quality=90)
    calls = spy_on_libjpeg_turbo(monkeypatch)
    tensor = decode_to_tensor(open_image(path), scale)
    assert len(calls) == 1 and not calls[0]["fastupsample"] and not calls[0].get("fastdct")
    expected = pil_to_tensor(decode_image(open_image(path), scale))  # Pillow's draft at the same scale
    assert tensor.shape == expected.shape == (3, -(-150 // scale), -(-203 // scale))
    assert (tensor.int() - expected.int()).abs().max() <= 2


def test_fast_decode_is_close_to_the_exact_one_and_unbiased(tmp_path, monkeypatch):
    path = tmp_path / "a.jpg"
    pixels = np.asarray(smooth_image(480, 360)).astype(np.float32)
    pixels += np.random.RandomState(0).normal(0, 8, pixels.shape)  # photo-like fine detail
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    calls = spy_on_libjpeg_turbo(monkeypatch)
    fast = decode_to_tensor(open_image(path), fast=True)
    assert calls[0]["fastupsample"] and not calls[0].get("fastdct")
    difference = fast.float() - decode_to_tensor(open_image(path)).float()
    assert 0 < difference.abs().mean() < 1.0
    # No colour cast: the fast IDCT (not used) would darken red and blue by over a grey level on average.
    assert difference.mean((1, 2)).abs().max() < 0.2


def test_grayscale_jpeg_becomes_rgb_and_cmyk_jpeg_goes_through_pillow(tmp_path, monkeypatch):
    gray = tmp_path / "gray.jpg"
    Image.fromarray(np.asarray(smooth_image(64, 48))[..., 1]).save(gray, quality=95)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cmyk, quality=95)  # pure red in CMYK
    calls = spy_on_libjpeg_turbo(monkeypatch)
    tensor = decode_to_tensor(open_image(gray))
    assert len(calls) == 1 and torch.equal(tensor, pil_to_tensor(load_image(gray)))
    r, g, b = decode_to_tensor(open_image(cmyk))[:, 8, 8].tolist()
    assert len(calls) == 1, "CMYK is converted by Pillow, as decode_image does"
    assert r > 230 and g < 25 and b < 25


def test_a_jpeg_libjpeg_turbo_refuses_is_decoded_or_refused_by_pillow(tmp_path, monkeypatch):
    path = tmp_path / "a.jpg"
    smooth_image(64, 48).save(path, quality=90)

    def refuse(*args, **kwargs):
        raise ValueError("Corrupt JPEG data: 3 extraneous bytes before marker 0xd9")

    monkeypatch.setattr(simplejpeg, "decode_jpeg", refuse)
    assert torch.equal(decode_to_tensor(open_image(path)), pil_to_tensor(load_image(path)))
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(BadImageError, match="truncated") as info:
        decode_to_tensor(open_image(path), fast=True)
    assert info.value.path == str(path)


def test_decompression_bombs_are_refused_with_the_limit_in_the_message(tmp_path):
    for side in (10_000, 100_000):  # over our limit; over twice Pillow's (its own error)
        path = tmp_path / f"bomb{side}.png"
        png_header_only(path, side, side)
        with pytest.raises(BadImageError, match=str(MAX_IMAGE_PIXELS)):
            open_image(path)


def test_grayscale_palette_cmyk_become_rgb(tmp_path):
    gray = tmp_path / "gray.png"
    Image.new("L", (8, 8), 77).save(gray)
    assert load_image(gray).getpixel((3, 3)) == (77, 77, 77)

    palette = tmp_path / "palette.png"
    Image.new("RGB", (8, 8), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(palette)
    assert load_image(palette).getpixel((0, 0)) == (10, 200, 30)

    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cmyk, quality=95)  # pure red in CMYK
    r, g, b = load_image(cmyk).getpixel((8, 8))
    assert r > 230 and g < 25 and b < 25


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    values = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    loaded = np.asarray(load_image(path))
    assert loaded[..., 0].tolist() == [[0, 64], [128, 255]]
    assert (loaded[..., 0] == loaded[..., 2]).all()


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red everywhere, opaque on the left half only
    rgba[:, :2, 3] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    loaded = load_image(path)
    assert loaded.getpixel((0, 0)) == (200, 0, 0)
    assert loaded.getpixel((3, 0)) == (255, 255, 255)

    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255])
    palette.info["transparency"] = 1
    path = tmp_path / "transparent_palette.png"
    palette.save(path, transparency=1)
    assert load_image(path).getpixel((1, 1)) == (255, 255, 255)


@pytest.mark.parametrize("decoder", ["pil", "tensor"])
def test_exif_orientation_is_applied(tmp_path, decoder):
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)  # stored: 64 wide, 32 high, black left, white right
    pixels[:, 32:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())
    shown = as_array(path, decoder).mean(-1)
    assert shown.shape == (64, 32)  # displayed: 32 wide, 64 high
    assert shown[:28].mean() < 20 and shown[36:].mean() > 235  # the left (black) half is now on top


def exif_jpeg(path, pixels: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_as_pillow_shows_it(tmp_path, monkeypatch, orientation, scale):
    pixels = np.asarray(smooth_image(96, 64)).copy()
    pixels[:16, :24] = (255, 0, 0)  # a red corner, so every flip and turn is told apart
    path = tmp_path / f"o{orientation}.jpg"
    exif_jpeg(path, pixels, orientation)
    calls = spy_on_libjpeg_turbo(monkeypatch)
    tensor = decode_to_tensor(open_image(path), scale)
    assert len(calls) == 1
    expected = pil_to_tensor(decode_image(open_image(path), scale))  # ImageOps.exif_transpose
    assert tensor.shape == expected.shape
    assert (tensor.int() - expected.int()).abs().max() <= 2


def test_draft_decodes_at_reduced_scale_close_to_a_full_decode(tmp_path):
    path = tmp_path / "big.jpg"
    smooth_image(800, 600).save(path, quality=92)
    reduced = load_image(path, draft_size=128)  # shorter side 600 >= 4 x 128: quarter scale
    assert reduced.size == (200, 150)
    assert load_image(path, draft_size=300).size == (400, 300)
    assert load_image(path, draft_size=301).size == (800, 600)
    full = load_image(path).resize((200, 150), Image.Resampling.BOX)
    difference = np.abs(np.asarray(reduced, dtype=np.float32) - np.asarray(full, dtype=np.float32))
    assert difference.mean() < 2.0 and np.percentile(difference, 99) < 8
