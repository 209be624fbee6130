"""The embedded synthetic shapes dataset: deterministic bytes, class counts, caching, atomic creation."""

import hashlib
import json

import numpy as np
import pytest

from inceptionnet.data import synthetic
from inceptionnet.data.folder import scan_image_folder
from inceptionnet.errors import DataError


def file_hashes(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.jpg"))}


def test_same_bytes_every_time_and_classes_differ(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        synthetic.write_images(folder, images_per_class=3)
    hashes = file_hashes(first)
    assert len(hashes) == 30 and hashes == file_hashes(second)
    assert len(set(hashes.values())) == 30
    scan = scan_image_folder(first)
    assert scan.class_names == sorted(synthetic.CLASS_NAMES) and not scan.skipped
    assert json.loads((first / synthetic.MANIFEST).read_text())["images_per_class"] == 3


def test_images_vary_in_colour_and_layout_not_only_in_shape():
    images = [np.asarray(synthetic.render_image(c, i), dtype=np.float32) for c in range(10) for i in range(4)]
    assert all(image.shape == (synthetic.IMAGE_SIZE, synthetic.IMAGE_SIZE, 3) for image in images)
    means = np.array([image.mean((0, 1)) for image in images])
    assert means.std(0).min() > 15, "background colours vary across images"
    circles = images[4:8]
    assert min(np.abs(a - b).mean() for a in circles for b in circles if a is not b) > 20


def test_default_root_follows_the_cache_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("INCEPTIONNET_CACHE", str(tmp_path))
    assert synthetic.default_synthetic_root() == tmp_path / f"synthetic-v{synthetic.SYNTHETIC_VERSION}"


def test_a_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not an inceptionnet synthetic dataset"):
        synthetic.ensure_synthetic_dataset(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.slow
def test_full_dataset_is_generated_once_atomically_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("INCEPTIONNET_CACHE", str(tmp_path))
    root = synthetic.ensure_synthetic_dataset()
    assert root == synthetic.default_synthetic_root()
    scan = scan_image_folder(root)
    counts = np.bincount([label for _, label in scan.samples])
    assert counts.tolist() == [synthetic.IMAGES_PER_CLASS] * len(synthetic.CLASS_NAMES)
    assert [p.name for p in tmp_path.iterdir()] == [root.name], "no temporary folder left behind"
    hashes = file_hashes(root)
    monkeypatch.setattr(synthetic, "write_images", lambda *a, **k: pytest.fail("regenerated a cached dataset"))
    assert synthetic.ensure_synthetic_dataset() == root and file_hashes(root) == hashes
