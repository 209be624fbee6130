"""Image folders: scanning, stratified split, skipping bad files (also across worker processes), build_datasets."""

import logging
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionnet.data.datasets import build_datasets
from inceptionnet.data.folder import (
    ImageDataset,
    SkippedSample,
    collate_skipping,
    scan_image_folder,
    single_sample_classes,
    stratified_split,
)
from inceptionnet.data.loaders import build_loader
from inceptionnet.data.transforms import TrainAugment, build_eval_transform, build_train_transform
from inceptionnet.errors import ConfigError, DataError
from inceptionnet.models.registry import Preprocess

SIZE = 16


def write_image(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(seed).randint(0, 256, (24, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_folder(root, counts: dict[str, int], ext: str = "png") -> None:
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(root / name / f"{i:03d}.{ext}", seed=100 * c + i)


def add_bad_files(folder) -> list[str]:
    """A zero-byte file, a text file named .jpg and a truncated JPEG in `folder`; their paths."""
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    write_image(folder / "whole.jpg", seed=7)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    return sorted(str(folder / name) for name in ("zero.jpg", "text.jpg", "cut.jpg"))


def transforms():
    pre = Preprocess(input_size=SIZE)
    return build_train_transform(TrainAugment(), pre, SIZE), build_eval_transform(pre, SIZE)


def test_scan_sorts_classes_and_skips_non_images_with_a_reason(tmp_path):
    make_folder(tmp_path, {"dog": 2, "cat": 3})
    (tmp_path / "dog" / "notes.txt").write_text("hello")
    write_image(tmp_path / "cat" / "nested" / "deep.jpg", seed=1)
    scan = scan_image_folder(tmp_path)
    assert scan.class_names == ["cat", "dog"]
    assert Counter(label for _, label in scan.samples) == {0: 4, 1: 2}
    assert scan.skipped == [(str(tmp_path / "dog" / "notes.txt"), "not an image file extension (.txt)")]


def test_scan_errors_are_one_clear_line(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_image_folder(tmp_path / "missing")
    with pytest.raises(DataError, match="no class folders"):
        scan_image_folder(tmp_path)
    make_folder(tmp_path, {"a": 2})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.md").write_text("x")
    with pytest.raises(DataError, match="class folder .*b has no image files") as info:
        scan_image_folder(tmp_path)
    assert "\n" not in str(info.value)


def test_stratified_split_keeps_proportions_and_is_seeded():
    samples = [(f"/d/c{label}/{i}.png", label) for label, n in enumerate((10, 20, 5)) for i in range(n)]
    train, val = stratified_split(samples, 0.2, seed=3)
    assert Counter(label for _, label in val) == {0: 2, 1: 4, 2: 1}
    assert sorted(train + val) == sorted(samples) and not set(train) & set(val)
    assert stratified_split(list(reversed(samples)), 0.2, seed=3) == (train, val)
    other_seeds = [stratified_split(samples, 0.2, seed=s)[1] for s in range(4, 8)]
    assert any(v != val for v in other_seeds)


def test_stratified_split_keeps_a_single_image_class_in_train_and_refuses_bad_fractions():
    samples = [("/d/a/0.png", 0), ("/d/a/1.png", 0), ("/d/b/0.png", 1)]
    train, val = stratified_split(samples, 0.5, seed=0)
    assert ("/d/b/0.png", 1) in train and len(val) == 1 and single_sample_classes(samples) == [1]
    with pytest.raises(DataError, match="single image"):
        stratified_split([("/d/a/0.png", 0), ("/d/b/0.png", 1)], 0.5, seed=0)
    with pytest.raises(ConfigError, match="--val-split"):
        stratified_split(samples[:2], 1.0, seed=0)


def test_dataset_hands_bad_files_on_as_skipped_samples_without_logging_them(tmp_path, caplog):
    make_folder(tmp_path, {"a": 2})
    bad = add_bad_files(tmp_path / "a")
    scan = scan_image_folder(tmp_path)
    train_tf, eval_tf = transforms()
    for transform in (train_tf, eval_tf, lambda img: torch.from_numpy(np.array(img)).permute(2, 0, 1)):
        dataset = ImageDataset(scan.samples, transform)
        with caplog.at_level(logging.WARNING, logger="inceptionnet.data"):
            items = [dataset[i] for i in range(len(dataset))]
        skipped = sorted(item.path for item in items if isinstance(item, SkippedSample))
        assert skipped == bad
        assert not caplog.text  # the consumer reports each skipped file, once
        good = [item for item in items if not isinstance(item, SkippedSample)]
        assert len(good) == 2 and all(label == 0 for _, label in good)


def test_collate_moves_skipped_items_out_of_the_batch():
    image = torch.zeros(3, 4, 4)
    batch = collate_skipping([(image, 1), SkippedSample("/x.jpg", "empty file"), (image + 1, 2)])
    assert batch.images.shape == (2, 3, 4, 4) and batch.targets.tolist() == [1, 2]
    assert batch.skipped == [("/x.jpg", "empty file")]
    empty = collate_skipping([SkippedSample("/y.jpg", "truncated")])
    assert len(empty.images) == 0 and len(empty.targets) == 0 and empty.skipped == [("/y.jpg", "truncated")]


def test_loader_with_workers_reports_every_skipped_file_and_repeats_with_a_seed(tmp_path):
    make_folder(tmp_path, {"a": 6, "b": 6})
    bad = add_bad_files(tmp_path / "b")
    scan = scan_image_folder(tmp_path)
    train_tf, _ = transforms()
    dataset = ImageDataset(scan.samples, train_tf)

    def epoch(loader):
        batches = list(loader)
        skipped = sorted(path for b in batches for path, _ in b.skipped)
        return skipped, torch.cat([b.images for b in batches]), torch.cat([b.targets for b in batches])

    first = build_loader(dataset, batch_size=4, shuffle=True, workers=2, seed=5)
    second = build_loader(dataset, batch_size=4, shuffle=True, workers=2, seed=5)
    skipped, images, targets = epoch(first)
    assert skipped == bad and len(targets) == 12 and images.shape[1:] == (3, SIZE, SIZE)
    again = epoch(second)
    assert torch.equal(again[1], images) and torch.equal(again[2], targets)
    next_epoch = epoch(first)
    assert not torch.equal(next_epoch[1], images)
    first.set_epoch(0)
    assert torch.equal(epoch(first)[1], images)


def test_build_datasets_from_train_val_folders(tmp_path):
    make_folder(tmp_path / "train", {"a": 3, "b": 3, "c": 2})
    make_folder(tmp_path / "val", {"b": 2, "c": 1})
    make_folder(tmp_path / "test", {"a": 1})
    (tmp_path / "train" / "a" / "x.txt").write_text("x")
    train_tf, eval_tf = transforms()
    data = build_datasets(str(tmp_path), 0.2, 0, train_tf, eval_tf)
    assert data.class_names == ["a", "b", "c"]
    assert (len(data.train), len(data.val), len(data.test)) == (8, 3, 1)
    assert sorted({label for _, label in data.val.samples}) == [1, 2]  # re-indexed into train's classes
    assert data.skipped == [(str(tmp_path / "train" / "a" / "x.txt"), "not an image file extension (.txt)")]
    make_folder(tmp_path / "val", {"zebra": 1})
    with pytest.raises(DataError, match="zebra"):
        build_datasets(str(tmp_path), 0.2, 0, train_tf, eval_tf)


def test_build_datasets_from_train_test_folders_validates_on_test(tmp_path):
    make_folder(tmp_path / "train", {"a": 2, "b": 2})
    make_folder(tmp_path / "test", {"b": 1})
    data = build_datasets(str(tmp_path), 0.2, 0, *transforms())
    assert data.class_names == ["a", "b"] and data.test is None and "validation = test" in data.source
    assert (len(data.train), len(data.val)) == (4, 1) and data.val.samples[0][1] == 1


def test_build_datasets_splits_a_plain_folder(tmp_path):
    make_folder(tmp_path, {"a": 10, "b": 5})
    train_tf, eval_tf = transforms()
    data = build_datasets(tmp_path, 0.2, 1, train_tf, eval_tf)
    assert (len(data.train), len(data.val), data.test) == (12, 3, None)
    image, label = data.val[0]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32 and label in (0, 1)
    assert data.val.transform is eval_tf and data.train.transform is train_tf
    with pytest.raises(DataError, match="does not exist"):
        build_datasets(tmp_path / "nope", 0.2, 1, train_tf, eval_tf)
