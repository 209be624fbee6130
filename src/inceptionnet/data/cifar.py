"""CIFAR-10 from the standard python batches (`cifar-10-batches-py`), read by torchvision; never downloaded."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

from torch import Tensor
from torchvision.datasets import CIFAR10

from ..errors import DataError

CIFAR10_FOLDER = CIFAR10.base_folder  # "cifar-10-batches-py"
_CIFAR10_FILES = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]


class _LocalCIFAR10(CIFAR10):
    """torchvision's CIFAR10, checking that the batch files exist rather than their MD5 sums.

    Re-pickled or test copies are accepted; a broken file fails when unpickled, which we report.
    """

    def _check_integrity(self) -> bool:
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, name)) for name in _CIFAR10_FILES)

    def _load_meta(self) -> None:
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


def find_cifar10_root(path: str | os.PathLike) -> Path | None:
    """The folder holding `cifar-10-batches-py` if `path` is it or holds it, else None."""
    path = Path(path)
    if path.name == CIFAR10_FOLDER and path.is_dir():
        return path.parent
    if (path / CIFAR10_FOLDER).is_dir():
        return path
    return None


def cifar10_datasets(
    root: str | os.PathLike, train_transform: Callable[..., Tensor], eval_transform: Callable[..., Tensor]
) -> tuple[CIFAR10, CIFAR10, list[str]]:
    """(train 50,000, test 10,000, class names) from `root/cifar-10-batches-py` or `root` being that folder.

    Items are `(tensor, label)` with the transform applied to a 32x32 RGB PIL image. A missing folder
    or file is one `DataError` line saying what to put where.
    """
    parent = find_cifar10_root(root)
    expected = Path(root) / CIFAR10_FOLDER if parent is None else parent / CIFAR10_FOLDER
    if parent is None or not all((expected / name).is_file() for name in _CIFAR10_FILES):
        raise DataError(
            f"CIFAR-10 not found: put the python version's {CIFAR10_FOLDER} folder "
            f"({', '.join(_CIFAR10_FILES)}) at {expected}"
        )
    try:
        train = _LocalCIFAR10(str(parent), train=True, transform=train_transform)
        test = _LocalCIFAR10(str(parent), train=False, transform=eval_transform)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
        raise DataError(f"CIFAR-10 batches in {expected} are unreadable ({type(e).__name__}: {e})") from None
    return train, test, list(train.classes)
