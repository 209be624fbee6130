"""Opening and decoding image files: every bad file becomes a `BadImageError`, every good one an RGB image.

Decoding is split in two so callers can look before they pay: `open_image` reads only the header
(size, format, EXIF), then `decode_image` (PIL) or `decode_to_tensor` (uint8 tensor) decodes,
optionally at 1/2, 1/4 or 1/8 scale for JPEGs (libjpeg's DCT scaling: PIL `draft`, or simplejpeg's
libjpeg-turbo for tensors), applies the EXIF orientation and converts to RGB.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import simplejpeg
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor

from ..errors import DataError

# Pillow's own warning threshold (about 89.5 megapixels, 0.25 GiB as RGB). Larger images are refused
# rather than decoded: a tiny file can claim a huge size and exhaust memory.
MAX_IMAGE_PIXELS = 89_478_485

# The EXIF orientations (5-8) that turn the stored image by 90 degrees, swapping width and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_DRAFT_SCALES = (8, 4, 2)


class BadImageError(DataError):
    """An image file that cannot be used: empty, not an image, corrupt, truncated, or too large."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot use image {self.path}: {reason}")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open `path` lazily: only the header is read (size, format, EXIF); pixels are decoded later.

    Raises `BadImageError` for a missing or zero-byte file, a file that is not an image, an unreadable
    header, and images over `MAX_IMAGE_PIXELS` pixels.
    """
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise BadImageError(path, f"cannot read file ({e.strerror or e})") from None
    return _open_checked(path, path, size)


def open_image_bytes(data: bytes, name: str = "<upload>") -> Image.Image:
    """`open_image` for an image held in memory (an upload; nothing touches the disk); `name` names it in
    errors. The same checks: empty, not an image, unreadable header, too many pixels."""
    return _open_checked(io.BytesIO(data), name, len(data))


def _open_checked(source: str | os.PathLike | io.BytesIO, name: str | os.PathLike, size: int) -> Image.Image:
    """Image.open(source) with every failure, and a pixel count over the limit, as a BadImageError on `name`."""
    if size == 0:
        raise BadImageError(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # We apply our own limit below, with a clearer message than Pillow's warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
    except Image.DecompressionBombError:
        raise BadImageError(name, f"image is larger than the limit of {MAX_IMAGE_PIXELS} pixels "
                                  "(decompression bomb?)") from None
    except UnidentifiedImageError:
        raise BadImageError(name, "not an image file (format not recognised)") from None
    except Exception as e:  # Pillow's header parsers raise many types for bad bytes
        raise BadImageError(name, f"unreadable image header ({type(e).__name__}: {e})") from None
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        img.close()
        raise BadImageError(
            name, f"{width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels (decompression bomb?)"
        )
    return img


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag of `img` (1 = upright, 2-8 = flipped and/or turned); header only."""
    try:
        return img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF: the orientation is unknown, so none is applied
        return 1


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of `img` as it will look after its EXIF orientation is applied; header only."""
    width, height = img.size
    return (height, width) if exif_orientation(img) in _TRANSPOSING_ORIENTATIONS else (width, height)


def draft_scale(region_width: float, region_height: float, out_width: int, out_height: int) -> int:
    """The largest JPEG reduction (1, 2, 4 or 8) that keeps a region of the given size at least `out` pixels."""
    for scale in _DRAFT_SCALES:
        if region_width >= scale * out_width and region_height >= scale * out_height:
            return scale
    return 1


def decode_image(img: Image.Image, scale: int = 1) -> Image.Image:
    """Decode an image from `open_image` into RGB, EXIF orientation applied.

    `scale` (1, 2, 4, 8) asks a JPEG to be decoded at 1/scale of its size (ceil), which is several
    times faster; other formats ignore it. An image that is already decoded is only converted.
    Grayscale, palette, CMYK and 16-bit images become RGB; transparency is composited on white.
    Raises `BadImageError` for corrupt or truncated data.
    """
    path = getattr(img, "filename", "") or "<image>"
    if scale > 1 and img.format == "JPEG":
        width, height = img.size
        # Asking for (width // scale, height // scale) makes Pillow pick exactly this scale.
        img.draft(img.mode, (max(1, width // scale), max(1, height // scale)))
    try:
        img.load()
    except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, zlib.error...
        img.close()
        raise BadImageError(path, f"corrupt or truncated image data ({type(e).__name__}: {e})") from None
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # malformed EXIF: keep the stored orientation rather than lose the image
        pass
    return to_rgb(img)


def decode_to_tensor(img: Image.Image, scale: int = 1, fast: bool = False) -> Tensor:
    """Like `decode_image`, but returns a uint8 (3, H, W) RGB tensor (possibly a strided view).

    An RGB or grayscale JPEG not yet decoded is decoded by libjpeg-turbo (simplejpeg) straight into an
    array, at 1/scale of its size like `decode_image`, its EXIF orientation applied to the tensor; the
    pixels are Pillow's. `fast` upsamples chroma by repeating pixels instead of libjpeg's smooth
    upsampling: about 6 % faster, unbiased, a fraction of a grey level of mean difference on photos
    (colour may bleed by a pixel at sharp colour edges); meant for training augmentation. Any other
    image, and any JPEG libjpeg-turbo refuses, goes through `decode_image`, which also gives the reason
    a bad file is bad.
    """
    if img.format == "JPEG" and img.mode in ("RGB", "L") and img.tile and getattr(img, "fp", None):
        image = _decode_jpeg_turbo(img, scale, fast)
        if image is not None:
            return image
    return pil_to_tensor(decode_image(img, scale))


def _decode_jpeg_turbo(img: Image.Image, scale: int, fast: bool) -> Tensor | None:
    """The JPEG behind header-only `img` as an oriented (3, H, W) tensor; None where simplejpeg refuses it."""
    width, height = img.size
    img.fp.seek(0)  # the file Pillow opened for the header: no second open
    data = img.fp.read()
    try:
        # A minimum of ceil(size / scale) selects exactly libjpeg's 1/scale DCT scaling, as Pillow's draft
        # does. Only the powers of two that `draft_scale` picks are worth asking for: the 5/8, 3/4 and
        # 7/8 scalings use slow non-SIMD IDCTs and decode slower than full size (bench/RESULTS.md).
        # No fastdct: libjpeg's fast IDCT truncates, darkening every image by 0.5 (grey) to 1.3 (red, blue)
        # grey levels, a bias training would see and evaluation not, for a 5 % faster decode.
        pixels = simplejpeg.decode_jpeg(
            data,
            "RGB",
            fastupsample=fast,
            min_width=-(-width // scale),
            min_height=-(-height // scale),
            strict=True,  # libjpeg's warnings (corrupt data it would paper over) raise too
        )
    except ValueError:  # corrupt or truncated data: Pillow decides whether it is usable and says why not
        return None
    return _orient(torch.from_numpy(pixels).permute(2, 0, 1), exif_orientation(img))


def _orient(image: Tensor, orientation: int) -> Tensor:
    """Apply EXIF `orientation` to a (C, H, W) tensor as `ImageOps.exif_transpose` does to an image."""
    if orientation == 2:  # mirrored
        return image.flip(-1)
    if orientation == 3:  # turned 180 degrees
        return image.flip(-2, -1)
    if orientation == 4:  # mirrored top to bottom
        return image.flip(-2)
    if orientation == 5:  # transposed
        return image.transpose(-2, -1)
    if orientation == 6:  # turned 90 degrees counter-clockwise: turn back clockwise
        return image.rot90(-1, (-2, -1))
    if orientation == 7:  # transversed
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:  # turned 90 degrees clockwise: turn back counter-clockwise
        return image.rot90(1, (-2, -1))
    return image


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB (16-bit scaled down, transparency on white)."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT_MODES:
        # Pillow's convert() clips 16-bit values at 255 instead of scaling them.
        gray = np.asarray(img, dtype=np.float32) / 257.0
        return Image.fromarray(np.clip(gray + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | os.PathLike, draft_size: int | None = None) -> Image.Image:
    """Decode `path` into an RGB PIL image with its EXIF orientation applied.

    With `draft_size`, a JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale whose shorter side is
    still at least `draft_size`. Raises `BadImageError` naming the path and the reason.
    """
    img = open_image(path)
    scale = 1
    if draft_size:
        scale = draft_scale(img.width, img.height, draft_size, draft_size)
    return decode_image(img, scale)
