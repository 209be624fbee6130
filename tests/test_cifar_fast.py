"""The cifar-fast Inception net and the CIFAR recipes: size, test-time views, the whitening stem, and a short
run that learns."""

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


def test_eval_mode_averages_six_views_or_the_mirror_pair():
    torch.manual_seed(0)
    model = InceptionCifarFast(num_classes=5, widths=(16, 32, 32)).eval()
    x = torch.randn(3, 3, 32, 32)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., :32, :32], padded[..., 2:, 2:]]  # one pixel up-left and down-right
    with torch.no_grad():
        def mirror_pair(v):
            return 0.5 * (model.logits(v) + model.logits(v.flip(-1)))
        want = 0.5 * mirror_pair(x) + 0.25 * (mirror_pair(shifted[0]) + mirror_pair(shifted[1]))
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)
        model.tta = "flip"
        torch.testing.assert_close(model(x), mirror_pair(x), atol=1e-5, rtol=1e-5)
        assert torch.allclose(model(x), model(x.flip(-1)), atol=1e-5)  # flip-invariant by construction
        model.tta = "none"
        torch.testing.assert_close(model(x), model.logits(x))
        model.train()
        model.tta = "flip-translate"
        assert not torch.allclose(model(x), model(x.flip(-1)), atol=1e-5)
    with pytest.raises(ValueError, match="tta must be one of"):
        InceptionCifarFast(tta="mirror")


def correlated_images(n: int = 64) -> torch.Tensor:
    """Images whose neighbouring pixels and channels are correlated, as in photos."""
    torch.manual_seed(0)
    x = torch.randn(n, 3, 32, 32)
    x = x + 0.9 * x.roll(1, -1) + 0.7 * x.roll(1, -2)
    return x + 0.5 * x.mean(1, keepdim=True)


def test_the_stem_whitens_patches_and_only_its_bias_learns():
    model = InceptionCifarFast(num_classes=10)
    x = correlated_images()
    model.init_from_data(x)
    conv = model.stem.conv
    with torch.no_grad():
        half = torch.nn.functional.conv2d(x, conv.weight[:12])  # the other 12 filters are their negatives
    features = half.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = features.T @ features / len(features)
    torch.testing.assert_close(covariance, torch.eye(12), atol=2e-3, rtol=0)
    torch.testing.assert_close(conv.weight[12:], -conv.weight[:12])
    model(x[:8]).sum().backward()
    assert conv.weight.grad is None and conv.bias.grad is not None
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)  # BN learns its shift


def test_a_fresh_run_whitens_the_stem_from_its_training_images(tmp_path):
    from inceptionnet.data.memory import in_memory_datasets, sample_model_inputs
    from inceptionnet.engine.checkpoint import load_checkpoint
    from inceptionnet.engine.train import DATA_INIT_IMAGES

    write_colour_batches(tmp_path / "data")
    options = TrainOptions(model="inception_cifar_fast", data=str(tmp_path / "data"), device="cpu", seed=3,
                           quiet=True, out=str(tmp_path / "run"))
    settings = get_recipe("cifar-fast")
    settings.epochs, settings.batch_size, settings.precision = 1, 40, "fp32"
    fit(options, settings)
    trained = load_checkpoint(tmp_path / "run" / "last.pt")["model"]["stem.conv.weight"]
    spec = get_spec("inception_cifar_fast")
    data = in_memory_datasets(str(tmp_path / "data"), 0.0, 3, 32, spec.preprocess)
    expected = InceptionCifarFast(num_classes=10)
    expected.init_from_data(sample_model_inputs(data.train, DATA_INIT_IMAGES, spec.preprocess, seed=3))
    torch.testing.assert_close(trained, expected.stem.conv.weight)


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
