"""Small images in memory: decoded once into uint8, augmented in whole batches, seeded per (seed, epoch, position)."""

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionnet.data.cifar import cifar10_datasets
from inceptionnet.data.memory import (
    BatchAugment,
    InMemoryLoader,
    TensorImages,
    batched_augment,
    in_memory_datasets,
    translate_flip,
)
from inceptionnet.engine.distributed import EvalSampler, TrainSampler
from inceptionnet.models.registry import Preprocess
from inceptionnet.recipes import get_recipe
from test_data_cifar import write_batches

PRE = Preprocess(input_size=8, mean=(0.0,) * 3, std=(1.0,) * 3)


def random_images(n: int = 12, size: int = 8) -> torch.Tensor:
    return torch.randint(1, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`image` (C, H, W) moved down by dy and right by dx, zeros where nothing moved in (written plainly)."""
    out = torch.zeros_like(image)
    _, h, w = image.shape
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[:, y, x] = image[:, y - dy, x - dx]
    return out


def test_translate_flip_moves_and_mirrors_each_image():
    images = random_images(3)
    shifts = torch.tensor([[0, 0], [2, -1], [-3, 3]])
    flips = torch.tensor([False, True, False])
    out = translate_flip(images, shifts, flips)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out[0], images[0])
    assert torch.equal(out[1], shifted(images[1], 2, -1).flip(-1))
    assert torch.equal(out[2], shifted(images[2], -3, 3))


def test_batch_augment_gives_translations_and_flips_repeatable_per_seed():
    images = random_images(16)
    augment = BatchAugment(pad=2, flip=True)
    out = augment(images, torch.Generator().manual_seed(5))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    seen_flip = seen_plain = False
    for original, got in zip(images, out, strict=True):
        matches = [(dy, dx, f) for dy in range(-2, 3) for dx in range(-2, 3) for f in (False, True)
                   if torch.equal(got, shifted(original, dy, dx).flip(-1) if f else shifted(original, dy, dx))]
        assert matches, "every output is a translation (maybe mirrored) of its input"
        seen_flip |= any(f for *_, f in matches)
        seen_plain |= any(not f for *_, f in matches)
    assert seen_flip and seen_plain
    assert torch.equal(out, augment(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(out, augment(images, torch.Generator().manual_seed(6)))
    assert torch.equal(BatchAugment()(images, torch.Generator().manual_seed(5)), images)


def test_recipes_map_to_batched_augmentation_or_the_per_image_path():
    assert batched_augment(get_recipe("cifar")) == BatchAugment(pad=4, flip=True)
    assert batched_augment(get_recipe("cifar-fast")) == BatchAugment(pad=2, flip=True)
    assert batched_augment(get_recipe("tf-course")) == BatchAugment()
    assert batched_augment(get_recipe("finetune")) is None  # random-resized crops need the per-image path
    assert batched_augment(get_recipe("googlenet-paper")) is None


def make_loader(dataset, sampler):
    return InMemoryLoader(dataset, 4, sampler, PRE, torch.device("cpu"), seed=3, augment=BatchAugment(pad=2, flip=True),
                          drop_last=True)


def passes(loader, epoch):
    loader.set_epoch(epoch)
    return [(b.images.clone(), b.targets.clone()) for b in loader]


def test_loader_batches_are_normalised_and_seeded_per_epoch():
    dataset = TensorImages(random_images(14), torch.arange(14) % 3)
    loader = make_loader(dataset, TrainSampler(dataset, seed=1, num_replicas=1, rank=0))
    first = passes(loader, 0)
    assert len(first) == len(loader) == 3  # 14 images, full batches of 4 only
    images, targets = first[0]
    assert images.dtype == torch.float32 and images.shape == (4, 3, 8, 8) and targets.dtype == torch.long
    assert images.max() <= 1.0 and images.min() >= 0.0  # mean 0, std 1 on the [0, 1] scale
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, passes(loader, 0),
                                                                                  strict=True))
    assert not torch.equal(first[0][0], passes(loader, 1)[0][0])


def test_resumed_epoch_draws_what_the_whole_epoch_drew():
    dataset = TensorImages(random_images(16), torch.arange(16) % 4)
    whole = passes(make_loader(dataset, TrainSampler(dataset, seed=1, num_replicas=1, rank=0)), 2)
    sampler = TrainSampler(dataset, seed=1, num_replicas=1, rank=0)
    sampler.set_epoch(2, skip=8)  # as the engine does: two batches of 4 were done before the checkpoint
    resumed = passes(make_loader(dataset, sampler), 2)
    assert len(resumed) == 2
    for (images, targets), (want_images, want_targets) in zip(resumed, whole[2:], strict=True):
        assert torch.equal(images, want_images) and torch.equal(targets, want_targets)
    assert len(passes(make_loader(dataset, sampler), 2)) == 4  # the skip applies once


def test_eval_loader_keeps_order_and_pixels():
    dataset = TensorImages(random_images(6), torch.arange(6))
    loader = InMemoryLoader(dataset, 4, EvalSampler(dataset, num_replicas=1, rank=0), PRE, torch.device("cpu"))
    batches = list(loader)
    assert [len(b.targets) for b in batches] == [4, 2]
    assert torch.equal(torch.cat([b.targets for b in batches]), torch.arange(6))
    assert torch.allclose(batches[0].images, dataset.images[:4].float() / 255)


def test_cifar_batches_load_pixel_exact(tmp_path):
    write_batches(tmp_path)
    data = in_memory_datasets(tmp_path, 0.2, 0, 32, PRE)
    train, test, names = cifar10_datasets(tmp_path, None, None)
    assert data.class_names == names and data.test is None
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape == (20, 3, 32, 32)
    assert torch.equal(data.train.images[6].permute(1, 2, 0), torch.from_numpy(train.data[6]))
    assert data.val.targets.tolist() == test.targets
    assert in_memory_datasets(tmp_path, 0.2, 0, 16, PRE).train.images.shape == (20, 3, 16, 16)
    assert in_memory_datasets(tmp_path, 0.2, 0, 224, PRE) is None  # 224 px copies are not small


def write_jpegs(root, size: int, per_class: int = 3) -> None:
    rng = np.random.RandomState(0)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.randint(0, 255, (size, size, 3)).astype(np.uint8)).save(folder / f"{i}.jpg")


def test_folder_of_small_jpegs_is_loaded_and_large_images_are_not(tmp_path):
    write_jpegs(tmp_path / "small", 32)
    (tmp_path / "small" / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    data = in_memory_datasets(tmp_path / "small", 0.2, 0, 32, PRE)
    assert data.class_names == ["cat", "dog"] and "validation = test" in data.source
    assert data.train.images.shape == (6, 3, 32, 32) and data.val.images.shape == (6, 3, 32, 32)
    assert data.train.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert [path.endswith("broken.jpg") for path, _ in data.skipped] == [True]
    with open(tmp_path / "small" / "train" / "cat" / "0.jpg", "rb") as f:
        want = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(data.train.images[0], want)
    write_jpegs(tmp_path / "large", 100, per_class=1)
    assert in_memory_datasets(tmp_path / "large", 0.2, 0, 32, PRE) is None
    assert in_memory_datasets(None, 0.2, 0, 32, PRE) is None


def test_tensor_images_rejects_float_pixels():
    with pytest.raises(ValueError, match="uint8"):
        TensorImages(torch.zeros(2, 3, 4, 4), torch.zeros(2))

