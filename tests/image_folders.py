"""Small image folders written by tests (imported by test modules, not collected)."""

from pathlib import Path

import numpy as np
from PIL import Image


def make_image_folder(root: Path, classes: int = 3, per_class: int = 8, size: int = 36) -> Path:
    """A small ImageFolder of PNGs whose classes differ in their dominant colour channel."""
    rng = np.random.RandomState(0)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.randint(0, 80, (size, size, 3)).astype(np.uint8)
            pixels[..., c % 3] += 150
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root
