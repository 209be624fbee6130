"""CIFAR-10 from batches written here in the real pickle format (rows of 3072 uint8: 1024 R, 1024 G, 1024 B)."""

import pickle

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import pil_to_tensor

from inceptionnet.data.cifar import cifar10_datasets
from inceptionnet.data.datasets import build_datasets
from inceptionnet.data.transforms import TrainAugment, build_eval_transform, build_train_transform
from inceptionnet.errors import DataError
from inceptionnet.models.registry import Preprocess

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
ROWS_PER_BATCH = 4


def row_for(index: int) -> np.ndarray:
    """A recognisable 32x32 image as one CIFAR row: red = index, green = column, blue = row."""
    red = np.full((32, 32), index, dtype=np.uint8)
    green = np.tile(np.arange(32, dtype=np.uint8), (32, 1))
    blue = green.T.copy()
    return np.concatenate([red.ravel(), green.ravel(), blue.ravel()])


def write_batches(root) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    start = 0
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        indices = range(start, start + ROWS_PER_BATCH)
        entry = {
            "batch_label": name.encode(),
            "labels": [i % 10 for i in indices],
            "data": np.stack([row_for(i) for i in indices]),
            "filenames": [f"{i}.png".encode() for i in indices],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        start += ROWS_PER_BATCH
    meta = {"label_names": NAMES, "num_cases_per_batch": ROWS_PER_BATCH, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_loads_train_and_test_batches_pixel_exact(tmp_path):
    write_batches(tmp_path)
    train, test, names = cifar10_datasets(tmp_path, pil_to_tensor, pil_to_tensor)
    assert names == NAMES and (len(train), len(test)) == (5 * ROWS_PER_BATCH, ROWS_PER_BATCH)
    image, label = train[6]
    assert label == 6 and image.shape == (3, 32, 32)
    assert (image[0] == 6).all() and image[1, 5, 7] == 7 and image[2, 5, 7] == 5
    image, label = test[1]
    assert label == (5 * ROWS_PER_BATCH + 1) % 10 and (image[0] == 5 * ROWS_PER_BATCH + 1).all()
    same, _, _ = cifar10_datasets(tmp_path / "cifar-10-batches-py", pil_to_tensor, pil_to_tensor)
    assert torch.equal(same[3][0], train[3][0])


def test_our_transforms_and_build_datasets(tmp_path):
    write_batches(tmp_path)
    pre = Preprocess(input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    train_tf = build_train_transform(TrainAugment(pad_crop=4), pre, 32)
    data = build_datasets(str(tmp_path), 0.1, 0, train_tf, build_eval_transform(pre, 32))
    assert data.class_names == NAMES and data.test is None and "CIFAR-10" in data.source
    assert (len(data.train), len(data.val)) == (20, 4)
    image, label = data.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 0
    image, _ = data.val[2]
    assert torch.allclose(image[0], torch.full((32, 32), (22 / 255 - 0.5) / 0.5), atol=1e-6)


def test_missing_folder_or_file_is_one_line_saying_where(tmp_path):
    with pytest.raises(DataError, match="put the python version's cifar-10-batches-py folder") as info:
        cifar10_datasets(tmp_path, pil_to_tensor, pil_to_tensor)
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value) and "\n" not in str(info.value)
    write_batches(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        cifar10_datasets(tmp_path, pil_to_tensor, pil_to_tensor)


def test_unreadable_batch_is_a_data_error(tmp_path):
    write_batches(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="unreadable"):
        cifar10_datasets(tmp_path, pil_to_tensor, pil_to_tensor)
