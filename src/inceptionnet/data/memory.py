"""Small images at full speed: decode once into one uint8 tensor, augment whole batches on the training device.

A dataset of small images (CIFAR-10 batches, or a folder whose images are at most `SMALL_SIDE` pixels a side)
is decoded once and kept as a uint8 tensor (N, 3, S, S): 150 MB for CIFAR-10's 50,000 training images. The
training loader then takes a batch by indexing that tensor, translates and mirrors it with one gather on the
device that trains, and normalises it there: no worker process, no per-image Python work.

Resume stays exact: the order comes from the engine's `TrainSampler` (a permutation per (seed, epoch),
started at the checkpoint's position), and the augmentation of each batch is drawn from a generator seeded
by (seed, rank, epoch, position of the batch in the epoch), so a resumed epoch draws what an uninterrupted
one would have, and the training's own random stream is never touched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from torchvision.transforms.v2 import functional as F

from ..errors import DataError
from ..models.registry import Preprocess
from ..recipes import Recipe
from ..runtime import mix_seed
from .cifar import cifar10_datasets, find_cifar10_root
from .datasets import Datasets, _relabel, has_split_folders, single_image_notes
from .folder import Batch, Sample, scan_image_folder, stratified_split
from .images import BadImageError, decode_image, open_image, oriented_size
from .loaders import announce_epoch
from .transforms import to_model_input

# A folder is "small" when its images are at most this many pixels a side and they fit in MAX_BYTES as uint8.
SMALL_SIDE = 64
MAX_BYTES = 2 * 2**30
_PROBES = 16  # files whose headers are read to decide whether a folder is small


class TensorImages(Dataset):
    """Images held in memory: `images` uint8 (N, 3, S, S), `targets` int64 (N,); items are (image, label)."""

    def __init__(self, images: Tensor, targets: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(targets):
            raise ValueError(f"expected uint8 (N, C, H, W) images and N targets, got {tuple(images.shape)} "
                             f"{images.dtype} and {tuple(targets.shape)}")
        self.images = images
        self.targets = targets.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.targets[index])

    @property
    def nbytes(self) -> int:
        return self.images.numel()


def sample_model_inputs(dataset: Dataset, count: int, preprocess: Preprocess, seed: int) -> Tensor:
    """Up to `count` images of `dataset` drawn at random (the draw fixed by `seed`) as the model takes them:
    float (n, 3, S, S). In-memory images are normalised by `preprocess`; other datasets' items come through
    their own transform, and unreadable files are left out."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    if isinstance(dataset, TensorImages):
        return to_model_input(dataset.images[order], preprocess)
    items = (dataset[int(i)] for i in order)
    images = [item[0] for item in items if isinstance(item, tuple)]
    if not images:
        raise DataError("no readable training image for the model's data-dependent initialisation")
    return torch.stack(images)


@dataclass(frozen=True)
class BatchAugment:
    """Batched augmentation of uint8 (N, C, H, W) on any device: a random translation by up to `pad` pixels
    (zero-padded, as the per-image pad-and-crop) and, with `flip`, a mirror of half the images."""

    pad: int = 0
    flip: bool = False

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """uint8 (N, C, H, W) -> uint8 (N, C, H, W), each image shifted and maybe mirrored (draws from `generator`)."""
        n, device = len(images), images.device
        shifts = torch.randint(-self.pad, self.pad + 1, (n, 2), generator=generator, device=device)
        flips = torch.rand(n, generator=generator, device=device) < 0.5 if self.flip else torch.zeros(
            n, dtype=torch.bool, device=device)
        return translate_flip(images, shifts, flips)


def translate_flip(images: Tensor, shifts: Tensor, flips: Tensor) -> Tensor:
    """Image i moved by `shifts[i]` = (dy, dx) pixels (down, right; uncovered pixels 0), then mirrored
    left-right where `flips[i]`. images (N, C, H, W), shifts (N, 2) integers, flips (N,) bool -> (N, C, H, W).

    One gather from the zero-padded batch: output pixel (y, x) reads padded pixel (y - dy + p, x' - dx + p),
    where x' is x or W - 1 - x.
    """
    n, c, h, w = images.shape
    pad = int(shifts.abs().max()) if n else 0
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    device = images.device
    ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
    xs = torch.where(flips[:, None], w - 1 - xs, xs)  # (N, W)
    rows = ys[None, :] - shifts[:, :1] + pad  # (N, H)
    cols = xs - shifts[:, 1:] + pad  # (N, W)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channels = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]


def batched_augment(recipe: Recipe) -> BatchAugment | None:
    """The `BatchAugment` doing what `recipe`'s augmentation does, or None when it needs the per-image path
    (random-resized crops, photometric jitter, random interpolation)."""
    if recipe.resize_only:
        return BatchAugment()
    if recipe.pad_crop > 0 and recipe.photometric == 0 and not recipe.random_interpolation:
        return BatchAugment(pad=recipe.pad_crop, flip=recipe.hflip)
    return None


class InMemoryLoader:
    """Batches of a `TensorImages` as `Batch(images float (B, 3, S, S) on `device`, targets (B,), [])`.

    `sampler` gives the indices of a pass (the engine's TrainSampler or EvalSampler); with `augment`, batch k
    of epoch e is augmented from a generator seeded by (seed, rank, e, its first position in the epoch).
    `set_epoch(e)` selects the epoch of the next pass, as for the engine's DataLoaders.
    """

    def __init__(self, dataset: TensorImages, batch_size: int, sampler: Sampler, preprocess: Preprocess,
                 device: torch.device, seed: int = 0, rank: int = 0, augment: BatchAugment | None = None,
                 drop_last: bool = False) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.sampler = sampler
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.seed, self.rank = seed, rank
        self.augment = augment
        self.drop_last = drop_last
        self.epoch = 0
        # Once on the device: a batch is then an index into memory that is already there.
        self.images = dataset.images.to(self.device)
        self.targets = dataset.targets.to(self.device)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the order and augmentation of the next pass; a resuming sampler leaves out its first `skip`
        indices."""
        self.epoch = epoch
        announce_epoch(self.sampler, epoch, skip)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        start = getattr(self.sampler, "skip", 0)  # read before iterating: a resuming sampler skips once
        order = torch.as_tensor(list(self.sampler), dtype=torch.long)
        epoch = self.epoch
        for first in range(0, len(order), self.batch_size):
            index = order[first:first + self.batch_size].to(self.device)
            if self.drop_last and len(index) < self.batch_size:
                return
            images = self.images[index]
            if self.augment is not None:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(mix_seed(self.seed, self.rank, epoch, start + first))
                images = self.augment(images, generator)
            yield Batch(to_model_input(images, self.preprocess), self.targets[index], [])


def in_memory_loaders(data: Datasets, batch_size: int, train_sampler: Sampler,
                      eval_sampler: Callable[[Dataset], Sampler], preprocess: Preprocess, device: torch.device,
                      seed: int, rank: int, augment: BatchAugment) -> tuple[InMemoryLoader, dict[str, InMemoryLoader]]:
    """The training loader (full batches only, `augment`ed, in `train_sampler`'s order) and the evaluation
    loaders of the non-empty val/test splits of `data` (in `eval_sampler(dataset)`'s order)."""
    train = InMemoryLoader(data.train, batch_size, train_sampler, preprocess, device, seed, rank, augment,
                           drop_last=True)
    evals = {}
    for split in ("val", "test"):
        dataset = getattr(data, split)
        if dataset is not None and len(dataset) > 0:
            evals[split] = InMemoryLoader(dataset, batch_size, eval_sampler(dataset), preprocess, device)
    return train, evals


# ---- loading ------------------------------------------------------------------------------------------------
def _decode_file(path: str, size: int, square: bool, interpolation: F.InterpolationMode) -> Tensor:
    """One file as uint8 (3, size, size): resized to size x size (`square`, the training crops' input) or
    shorter side to size then centre-cropped (as evaluation)."""
    image = F.pil_to_tensor(decode_image(open_image(path)))
    if tuple(image.shape[-2:]) != (size, size):
        image = F.resize(image, [size, size] if square else [size], interpolation=interpolation, antialias=True)
        image = F.center_crop(image, [size, size])
    return image


def decode_samples(samples: list[Sample], size: int, square: bool,
                   preprocess: Preprocess) -> tuple[TensorImages, list[tuple[str, str]]]:
    """Decode every (path, label) once into a `TensorImages` of uint8 (N, 3, size, size), in threads (the
    decoders release the GIL). Unreadable files are left out and returned as (path, reason)."""
    interpolation = F.InterpolationMode(preprocess.interpolation if preprocess.interpolation != "area" else "box")

    def decode(sample: Sample) -> Tensor | BadImageError:
        try:
            return _decode_file(str(sample[0]), size, square, interpolation)
        except BadImageError as e:
            return e

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        decoded = list(pool.map(decode, samples))
    kept = [(image, label) for image, (_, label) in zip(decoded, samples, strict=True) if isinstance(image, Tensor)]
    skipped = [(e.path, e.reason) for e in decoded if isinstance(e, BadImageError)]
    images = torch.stack([image for image, _ in kept]) if kept else torch.empty(0, 3, size, size, dtype=torch.uint8)
    return TensorImages(images, torch.tensor([label for _, label in kept], dtype=torch.long)), skipped


def is_small_folder(samples: list[Sample], side: int = SMALL_SIDE, max_bytes: int = MAX_BYTES) -> bool:
    """Whether the images of `samples` look small: evenly spaced probe files are at most `side` pixels a side
    (header only) and all of them as uint8 at that side would fit in `max_bytes`."""
    if not samples or len(samples) * 3 * side * side > max_bytes:
        return False
    step = max(1, len(samples) // _PROBES)
    for path, _ in samples[::step][:_PROBES]:
        try:
            with open_image(path) as img:
                if max(oriented_size(img)) > side:
                    return False
        except BadImageError:
            continue
    return True


def _cifar_batches(root: Path, size: int) -> tuple[TensorImages, TensorImages, list[str]]:
    """CIFAR-10's python batches as (train, test, class names), resized to `size` if it is not 32."""
    train, test, names = cifar10_datasets(root, None, None)

    def tensors(split) -> TensorImages:
        images = torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous()
        if size != images.shape[-1]:
            images = F.resize(images, [size, size], antialias=True)
        return TensorImages(images, torch.tensor(split.targets))

    return tensors(train), tensors(test), names


def in_memory_datasets(data: str | os.PathLike | None, val_split: float, seed: int, size: int,
                       preprocess: Preprocess) -> Datasets | None:
    """`Datasets` of `TensorImages` (uint8 (N, 3, size, size)) when `data` is small, else None.

    Small: CIFAR-10 batches (validation = the test batch), or folders of images at most SMALL_SIDE pixels a
    side: `train/` with `val/` and/or `test/` (validation = val, else test), or one folder of class folders
    split by `val_split` with `seed` (the same split as the per-image path). The synthetic set is not small, nor
    is any set trained at more than SMALL_SIDE pixels.
    """
    if data is None or not Path(data).is_dir() or size > SMALL_SIDE:  # upscaled copies would not be small
        return None
    root = Path(data)
    if find_cifar10_root(root) is not None:
        train, test, names = _cifar_batches(root, size)
        return Datasets(train, test, None, names, [], f"CIFAR-10 in {root} (validation = test batch), in memory")
    splits = _folder_splits(root, val_split, seed)
    if splits is None:
        return None
    names, samples, skipped, source, notes = splits
    if not is_small_folder(samples["train"]):
        return None
    decoded = {}
    for split, items in samples.items():
        decoded[split], bad = decode_samples(items, size, split == "train", preprocess)
        skipped = skipped + bad
    if len(decoded["train"]) == 0:
        raise DataError(f"no readable image in {root}")
    return Datasets(decoded["train"], decoded["val"], decoded.get("test"), names, skipped, source + ", in memory",
                    notes)


def _folder_splits(root: Path, val_split: float, seed: int):
    """(class names, {split: samples}, skipped, source, notes) for the folder layouts `in_memory_datasets` takes."""
    if has_split_folders(root):
        train = scan_image_folder(root / "train")
        names, skipped = train.class_names, list(train.skipped)
        samples = {"train": train.samples}
        for split in ("val", "test"):
            if (root / split).is_dir():
                scan = scan_image_folder(root / split)
                samples[split] = _relabel(scan, names, root / split)
                skipped += scan.skipped
        if "val" not in samples:
            samples["val"] = samples.pop("test")
            return names, samples, skipped, f"train/test folders in {root} (validation = test)", []
        return names, samples, skipped, f"train/val folders in {root}", []
    scan = scan_image_folder(root)
    train, val = stratified_split(scan.samples, val_split, seed)
    source = f"{root}, split {1 - val_split:g}/{val_split:g} with seed {seed}"
    notes = single_image_notes(scan.samples, scan.class_names)
    return scan.class_names, {"train": train, "val": val}, list(scan.skipped), source, notes

