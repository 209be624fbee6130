"""Every registered model trains with its own default recipe: loss finite and falling over a few dozen steps.

A small JPEG folder (two colour-coded classes) at each model's minimum input size, or 16 px when that is
smaller; fp32 asked for explicitly. The lr is scaled to the small batch as the engine does, except for the
fine-tuning recipe: meant for a pretrained body, from scratch its 0.1x body lr scaled down to batch 8 leaves a
few dozen steps with nothing to show.
"""

import csv

import pytest

from image_folders import make_image_folder
from inceptionnet import train
from inceptionnet.models import get_spec, list_models
from inceptionnet.recipes import get_recipe

EPOCHS = 12  # 2 batches of 8 an epoch: 24 optimizer steps


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), classes=2, per_class=12, size=40, ext="jpg")


@pytest.mark.slow
@pytest.mark.parametrize("model", list_models())
def test_default_recipe_lowers_a_finite_loss(model, jpeg_folder, tmp_path, one_thread):
    spec = get_spec(model)
    report = train(model, spec.default_recipe, str(jpeg_folder), epochs=EPOCHS, batch_size=8, precision="fp32",
                   img_size=max(spec.min_input_size, 16), device="cpu", quiet=True, out=str(tmp_path / "run"),
                   val_split=0.25, scale_lr=not get_recipe(spec.default_recipe).new_head)
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
    assert report["nonfinite_skipped"] == 0 and len(losses) == EPOCHS
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, (spec.default_recipe, losses)
