"""Training data loading speed: inceptionnet's pipeline against torchvision's ImageFolder + PIL default.

Run by hand (never in unit tests):  .venv/bin/python bench/data.py [--images 400] [--rounds 5] [--workers 2]

Writes a temporary ImageFolder of ~500x375 JPEGs (smooth gradients, blobs and fine texture, so the
files compress like photos), then times full passes of each loader in the same process, alternating,
after one warm-up pass each (persistent workers for both, so worker start-up is not timed). The
training transform is the same: random-resized crop to --size, horizontal flip, normalisation.
Prints the median images/s of each pipeline and the ratio to torchvision.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from inceptionnet.data.folder import ImageDataset, scan_image_folder
from inceptionnet.data.loaders import build_loader
from inceptionnet.data.transforms import TrainAugment, TrainTransform, to_model_input
from inceptionnet.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from inceptionnet.runtime import set_threads

BASELINE = "torchvision ImageFolder + PIL"


def photo_like(rng: np.random.RandomState, width: int, height: int) -> Image.Image:
    """Gradient + smooth blobs + fine noise texture, JPEG-compressing to photo-like sizes."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / max(width, height)
    base = rng.uniform(40, 215, 3) + rng.uniform(-60, 60, 3) * (xx + yy)[..., None]
    blobs = Image.fromarray(rng.uniform(-1, 1, (8, 10)).astype(np.float32), "F").resize((width, height), Image.BICUBIC)
    texture = Image.fromarray(rng.normal(0, 1, (height // 2, width // 2)).astype(np.float32), "F")
    texture = texture.resize((width, height), Image.BILINEAR)
    pixels = base + np.asarray(blobs)[..., None] * rng.uniform(30, 70, 3) + np.asarray(texture)[..., None] * 20
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_folder(root: Path, count: int, classes: int = 10) -> float:
    """`count` JPEGs of about 500x375 (some portrait) in `classes` class folders; returns the mean file size in KB."""
    rng = np.random.RandomState(0)
    sizes = []
    for i in range(count):
        folder = root / f"class{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        width, height = (500, 375) if i % 5 else (375, 500)
        width += rng.randint(-20, 21)
        path = folder / f"{i:05d}.jpg"
        photo_like(rng, width, height).save(path, quality=90)
        sizes.append(path.stat().st_size)
    return float(np.mean(sizes)) / 1024


def torchvision_loader(root: Path, size: int, batch_size: int, workers: int) -> DataLoader:
    transform = T.Compose(
        [T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    dataset = datasets.ImageFolder(str(root), transform=transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0)


def our_loader(root: Path, size: int, batch_size: int, workers: int, normalize: bool) -> DataLoader:
    transform = TrainTransform(TrainAugment(), Preprocess(), size, normalize=normalize)
    dataset = ImageDataset(scan_image_folder(root).samples, transform)
    return build_loader(dataset, batch_size, workers=workers, seed=0, shuffle=True)


def images_per_second(loader: DataLoader, normalize_batches: bool) -> float:
    """One full pass; with `normalize_batches`, uint8 batches are normalised here (as the engine would)."""
    preprocess = Preprocess()
    start, count = time.perf_counter(), 0
    for batch in loader:
        images = batch[0]
        if normalize_batches:
            images = to_model_input(images, preprocess)
        count += len(images)
    return count / (time.perf_counter() - start)


def cpu_ms_per_image(dataset, rounds: int = 3) -> float:
    """Best-of-`rounds` CPU milliseconds per item in this process: robust to other load on the machine."""
    dataset = getattr(dataset, "dataset", dataset)  # our loader wraps the dataset for per-epoch seeding
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for index in range(len(dataset)):
            dataset[index]
        best = min(best, (time.process_time() - start) / len(dataset) * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    set_threads(1)

    with tempfile.TemporaryDirectory(prefix="inceptionnet-bench-") as tmp:
        root = Path(tmp)
        kb = write_folder(root, args.images)
        print(f"{args.images} JPEGs of ~500x375, mean {kb:.0f} KB; crop {args.size}, {args.workers} workers, "
              f"batch {args.batch_size}, {args.rounds} rounds")  # fmt: skip
        loader_args = (root, args.size, args.batch_size, args.workers)
        pipelines = {
            BASELINE: (torchvision_loader(*loader_args), False),
            "inceptionnet (float in worker)": (our_loader(*loader_args, normalize=True), False),
            "inceptionnet (uint8, batch norm)": (our_loader(*loader_args, normalize=False), True),
        }
        rates: dict[str, list[float]] = {name: [] for name in pipelines}
        for loader, normalize in pipelines.values():
            images_per_second(loader, normalize)  # warm-up: starts the persistent workers, fills the page cache
        for _ in range(args.rounds):
            for name, (loader, normalize) in pipelines.items():
                rates[name].append(images_per_second(loader, normalize))
        baseline = statistics.median(rates[BASELINE])
        print("loaders, median throughput:")
        for name, values in rates.items():
            median = statistics.median(values)
            print(f"  {name:34s} {median:8.1f} images/s  ({median / baseline:.2f}x)   rounds: "
                  + " ".join(f"{v:.0f}" for v in values))  # fmt: skip
        print("one process, CPU time per image (dataset item, no loader):")
        cpu = {name: cpu_ms_per_image(loader.dataset) for name, (loader, _) in pipelines.items()}
        for name, ms in cpu.items():
            print(f"  {name:34s} {ms:8.2f} ms/image  ({cpu[BASELINE] / ms:.2f}x)")


if __name__ == "__main__":
    main()
