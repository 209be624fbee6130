"""The embedded default dataset: 10 classes of shapes, generated deterministically as an ImageFolder of JPEGs.

Each image is one shape (class) of random colour, size, position and rotation on a random textured
background (gradient, blotches, stripes) with pixel noise. Colours and textures are drawn
independently of the class, so only the outline tells the classes apart. Every outline must stay
distinct at the demo's 32 px: version 1 had a hexagon, whose corners depart from a circle by about
one pixel there, and circle/hexagon made two thirds of a trained GoogLeNet's errors; version 2 has
two dots instead (a half disc, tried first, was taken for an ellipse of the same extent). Every image has its own
legacy-NumPy seed (a stream NumPy keeps stable) and the JPEG quality is fixed, so a given version
produces the same bytes wherever the same libjpeg is used.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DataError

log = logging.getLogger("inceptionnet.data")

SYNTHETIC_VERSION = 2
CLASS_NAMES = ("arrow", "circle", "crescent", "cross", "dots", "ellipse", "ring", "square", "star", "triangle")
IMAGES_PER_CLASS = 300
IMAGE_SIZE = 96
JPEG_QUALITY = 90
MANIFEST = "synthetic.json"
_SUPERSAMPLE = 3  # shapes are drawn at 3x and box-filtered down, giving anti-aliased edges
_BASE_SEED = 20141
_MIN_CONTRAST = 60.0  # luminance gap between shape and background, out of 255

Point = tuple[float, float]


def default_synthetic_root() -> Path:
    """Where the synthetic set is cached: $INCEPTIONNET_CACHE/synthetic-vN, else ~/.cache/inceptionnet/synthetic-vN."""
    cache = os.environ.get("INCEPTIONNET_CACHE") or Path.home() / ".cache" / "inceptionnet"
    return Path(cache) / f"synthetic-v{SYNTHETIC_VERSION}"


def _regular_polygon(sides: int, radius: float, angle: float) -> list[Point]:
    return [
        (radius * math.cos(angle + 2 * math.pi * k / sides), radius * math.sin(angle + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def _rotate(points: list[Point], angle: float) -> list[Point]:
    c, s = math.cos(angle), math.sin(angle)
    return [(x * c - y * s, x * s + y * c) for x, y in points]


def _star(radius: float, angle: float) -> list[Point]:
    outer = _regular_polygon(5, radius, angle)
    inner = _regular_polygon(5, 0.45 * radius, angle + math.pi / 5)
    return [p for pair in zip(outer, inner, strict=True) for p in pair]


def _cross(radius: float, angle: float) -> list[Point]:
    a, b = 0.33 * radius, radius  # half arm width, arm length
    arm = [(a, b), (a, a), (b, a)]  # one quarter of the outline; the others are it turned by 90 degrees
    return [p for k in range(4) for p in _rotate(arm, angle - k * math.pi / 2)]


def _arrow(radius: float, angle: float) -> list[Point]:
    shaft, head_width, head_start = 0.2 * radius, 0.7 * radius, 0.1 * radius
    outline = [(-radius, -shaft), (head_start, -shaft), (head_start, -head_width), (radius, 0),
               (head_start, head_width), (head_start, shaft), (-radius, shaft)]  # fmt: skip
    return _rotate(outline, angle)


def _ellipse(radius: float, angle: float) -> list[Point]:
    return _rotate([(radius * math.cos(t), 0.5 * radius * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 72)], angle)


def _draw_polygon(draw: ImageDraw.ImageDraw, points: list[Point], cx: float, cy: float, fill: int) -> None:
    draw.polygon([(cx + x, cy + y) for x, y in points], fill=fill)


def _draw_disc(draw: ImageDraw.ImageDraw, cx: float, cy: float, radius: float, fill: int) -> None:
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)


def _draw_shape(name: str, draw: ImageDraw.ImageDraw, cx: float, cy: float, radius: float, angle: float) -> None:
    """Draw shape `name` in white on a black mask, centred at (cx, cy), `radius` the circumradius."""
    polygons: dict[str, Callable[[float, float], list[Point]]] = {
        "square": lambda r, a: _regular_polygon(4, 0.95 * r, a),
        "triangle": lambda r, a: _regular_polygon(3, r, a),
        "star": _star,
        "cross": _cross,
        "arrow": _arrow,
        "ellipse": _ellipse,
    }
    if name in polygons:
        _draw_polygon(draw, polygons[name](radius, angle), cx, cy, 255)
    elif name == "circle":
        _draw_disc(draw, cx, cy, 0.85 * radius, 255)
    elif name == "ring":
        _draw_disc(draw, cx, cy, radius, 255)
        _draw_disc(draw, cx, cy, 0.55 * radius, 0)
    elif name == "dots":
        for side in (-1, 1):
            offset = side * 0.55 * radius
            _draw_disc(draw, cx + offset * math.cos(angle), cy + offset * math.sin(angle), 0.42 * radius, 255)
    elif name == "crescent":
        _draw_disc(draw, cx, cy, radius, 255)
        offset = 0.5 * radius
        _draw_disc(draw, cx + offset * math.cos(angle), cy + offset * math.sin(angle), 0.85 * radius, 0)
    else:
        raise ValueError(f"unknown shape {name!r}")


@functools.cache
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) coordinates in [0, 1) of a size x size image, float32."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


def _background(rng: np.random.RandomState, size: int) -> np.ndarray:
    """A (size, size, 3) float background: two-colour gradient, smooth blotches and optional stripes."""
    yy, xx = _unit_grid(size)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(direction) + yy * math.sin(direction) + 1.5) / 3.0
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    bg = c0 + (c1 - c0) * (ramp[..., None] * np.float32(rng.uniform(0.2, 1.0)))
    blotches = Image.fromarray(rng.uniform(-1, 1, (6, 6)).astype(np.float32), "F").resize((size, size), Image.BICUBIC)
    bg += np.asarray(blotches)[..., None] * rng.uniform(0, 40, 3).astype(np.float32)
    if rng.uniform() < 0.5:
        frequency, angle = rng.uniform(4, 14), rng.uniform(0, math.pi)
        stripes = np.sin(np.float32(2 * math.pi * frequency) * (xx * math.cos(angle) + yy * math.sin(angle)))
        bg += stripes[..., None] * np.float32(rng.uniform(5, 25))
    return bg


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _shape_colour(rng: np.random.RandomState, background: np.ndarray) -> np.ndarray:
    """A random colour at least `_MIN_CONTRAST` away in luminance from the background's mean."""
    bg_luma = _luminance(background.reshape(-1, 3).mean(0))
    while True:
        colour = rng.uniform(0, 255, 3)
        if abs(_luminance(colour) - bg_luma) >= _MIN_CONTRAST:
            return colour


def render_image(class_index: int, index: int) -> Image.Image:
    """Image `index` of class `class_index`: a (IMAGE_SIZE, IMAGE_SIZE) RGB PIL image, the same every time."""
    rng = np.random.RandomState([_BASE_SEED, SYNTHETIC_VERSION, class_index, index])
    size, big = IMAGE_SIZE, IMAGE_SIZE * _SUPERSAMPLE
    background = _background(rng, size)
    colour = _shape_colour(rng, background)
    radius = rng.uniform(0.22, 0.42) * size
    margin = 0.9 * radius
    cx, cy = rng.uniform(margin, size - margin, 2)
    angle = rng.uniform(0, 2 * math.pi)
    mask = Image.new("L", (big, big), 0)
    _draw_shape(CLASS_NAMES[class_index], ImageDraw.Draw(mask), cx * _SUPERSAMPLE, cy * _SUPERSAMPLE,
                radius * _SUPERSAMPLE, angle)  # fmt: skip
    alpha = np.asarray(mask.resize((size, size), Image.BOX), dtype=np.float32)[..., None] / 255.0
    pixels = background * (1 - alpha) + colour * alpha
    # Luminance noise, uniform with a random standard deviation of up to 12: one draw per pixel, not per
    # channel, and uniform rather than normal, keep generation fast.
    noise_amplitude = rng.uniform(0, 12) * math.sqrt(3)
    pixels += (rng.random_sample((size, size, 1)).astype(np.float32) - 0.5) * np.float32(2 * noise_amplitude)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


def _write_class(folder: Path, class_index: int, images_per_class: int) -> None:
    name = CLASS_NAMES[class_index]
    (folder / name).mkdir()
    for index in range(images_per_class):
        image = render_image(class_index, index)
        image.save(folder / name / f"{name}_{index:04d}.jpg", format="JPEG", quality=JPEG_QUALITY)


def write_images(folder: Path, images_per_class: int = IMAGES_PER_CLASS) -> None:
    """Write the first `images_per_class` images of every class into `folder/<shape>/`, and the manifest.

    Classes are written in parallel processes (each image has its own seed, so the order is irrelevant).
    """
    workers = min(len(CLASS_NAMES), os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) as pool:
        done = [pool.submit(_write_class, folder, c, images_per_class) for c in range(len(CLASS_NAMES))]
        for future in done:
            future.result()
    manifest = {"version": SYNTHETIC_VERSION, "classes": list(CLASS_NAMES), "images_per_class": images_per_class,
                "image_size": IMAGE_SIZE, "jpeg_quality": JPEG_QUALITY}  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def ensure_synthetic_dataset(root: str | os.PathLike | None = None) -> Path:
    """The synthetic shapes dataset as an ImageFolder (`root/<shape>/<shape>_NNNN.jpg`); generated if absent.

    `root` is the dataset folder itself (default: `default_synthetic_root()`). It is generated in a
    temporary folder beside it and renamed into place, so a crash never leaves half a dataset and
    concurrent callers (DDP ranks) agree on one copy. A folder with a manifest is reused as is.
    """
    root = Path(root) if root is not None else default_synthetic_root()
    if (root / MANIFEST).is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise DataError(f"{root} exists but is not an inceptionnet synthetic dataset (no {MANIFEST}); remove it")
    root.parent.mkdir(parents=True, exist_ok=True)
    log.info("generating the synthetic shapes dataset in %s", root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        write_images(tmp)
        os.replace(tmp, root)  # replaces an empty folder; fails if another process got there first
    except OSError:
        if not (root / MANIFEST).is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
