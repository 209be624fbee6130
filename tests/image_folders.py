"""Small image folders written by tests (imported by test modules, not collected)."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def make_image_folder(root: Path, classes: int = 3, per_class: int | Sequence[int] = 8, size: int = 36,
                      ext: str = "png") -> Path:
    """A small ImageFolder whose classes differ in their dominant colour channel; `per_class` is one count for
    every class or one count a class; `ext` "png" or "jpg" (JPEG, quality 90)."""
    rng = np.random.RandomState(0)
    counts = [per_class] * classes if isinstance(per_class, int) else list(per_class)
    for c, count in enumerate(counts):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = rng.randint(0, 80, (size, size, 3)).astype(np.uint8)
            pixels[..., c % 3] += 150
            Image.fromarray(pixels).save(folder / f"{i}.{ext}", **({"quality": 90} if ext == "jpg" else {}))
    return root
