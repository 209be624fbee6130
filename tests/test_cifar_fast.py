"""The cifar-fast Inception net and the CIFAR recipes: size, flip TTA, and a short run that learns."""

import csv
import pickle

import numpy as np
import pytest
import torch

from inceptionnet import create_model, get_spec
from inceptionnet.engine.train import TrainOptions, fit
from inceptionnet.models.blocks import Branches
from inceptionnet.models.compact import InceptionCifarFast
from inceptionnet.recipes import get_recipe


def test_registered_with_its_recipe_and_the_stated_size():
    spec = get_spec("inception_cifar_fast")
    assert spec.default_recipe == "cifar-fast" and spec.default_input_size == 32
    model = create_model("inception_cifar_fast", num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(1.56e6, rel=0.01)  # the docstring's figure
    assert "1.56 M parameters" in InceptionCifarFast.__doc__
    assert sum(isinstance(m, Branches) for m in model.modules()) == 6  # built from Inception modules


def test_eval_mode_averages_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = InceptionCifarFast(num_classes=5, widths=(16, 32, 32)).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = 0.5 * (model.logits(x) + model.logits(x.flip(-1)))
        assert torch.allclose(model(x), want, atol=1e-6)
        assert torch.allclose(model(x), model(x.flip(-1)), atol=1e-5)  # flip-invariant by construction
        model.train()
        assert not torch.allclose(model(x), model(x.flip(-1)), atol=1e-5)


@pytest.mark.parametrize(("name", "batch", "epochs"), [("tf-course", 128, 5), ("tf-course-resnet", 32, 5),
                                                        ("cifar-fast", 512, 18)])
def test_recipes_exist(name, batch, epochs):
    recipe = get_recipe(name).validate()
    assert (recipe.batch_size, recipe.epochs) == (batch, epochs)
    if name.startswith("tf-course"):
        assert recipe.optimizer == "adam" and recipe.lr == 1e-3 and recipe.resize_only and not recipe.hflip


def write_colour_batches(root, rows: int = 24) -> None:
    """CIFAR-10 python batches (the real pickle format) whose 10 classes differ in their mean colour."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    palette = rng.randint(0, 256, (10, 3))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.randint(0, 10, rows)
        pixels = np.clip(palette[labels][:, :, None] + rng.randint(-40, 40, (rows, 3, 1024)), 0, 255)
        entry = {"labels": labels.tolist(), "data": pixels.reshape(rows, 3072).astype(np.uint8)}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["tf-course", "cifar-fast"])
def test_short_run_on_cifar_batches_learns_in_memory(tmp_path, recipe):
    """The recipes' settings (batched augmentation, EMA, label smoothing) on the small Inception10, in fp32."""
    write_colour_batches(tmp_path / "data")
    options = TrainOptions(model="inception_cifar", data=str(tmp_path / "data"), device="cpu", seed=0, quiet=True,
                           out=str(tmp_path / "run"))
    settings = get_recipe(recipe)
    settings.epochs, settings.batch_size, settings.precision, settings.warmup_epochs = 5, 24, "fp32", 0
    settings.lr = 1e-2 if settings.optimizer == "adam" else 0.05
    report = fit(options, settings)
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 5 and losses[-1] < 0.7 * losses[0]
    assert report["best_val_acc"] > 0.3
    assert "in memory" in (tmp_path / "run" / "log.txt").read_text()
