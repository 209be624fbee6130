"""Optimizer-step features of the engine, checked on the weights a real run writes: gradient accumulation,
gradient-norm clipping, channels_last, fused optimizers, and the finetune warning."""

import dataclasses

import pytest
import torch

from image_folders import make_image_folder
from inceptionnet.data.transforms import EvalTransform
from inceptionnet.engine import train as train_module
from inceptionnet.engine.checkpoint import load_checkpoint
from inceptionnet.engine.optim import build_optimizer
from inceptionnet.engine.train import TrainOptions, fit
from inceptionnet.models import create_model
from inceptionnet.recipes import get_recipe

pytestmark = pytest.mark.precision  # fp32 comparisons, rerun as both CPU kinds in CI

# BN in eval mode (freeze_bn) and no dropout: a batch's gradient is then the mean of its samples' gradients,
# whatever the micro-batching, so the runs below differ only where the feature under test acts. fp32 and
# NCHW unless a test says otherwise: the comparisons below are at float32 rounding.
PLAIN_SGD = dict(epochs=1, optimizer="sgd", lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                 schedule="constant", warmup_epochs=0.0, label_smoothing=0.0, ema_decay=0.0, freeze_bn=True,
                 pad_crop=0, scale_min=1.0, hflip=False, precision="fp32", channels_last=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 3 classes x 10 images, val split 0.4: 18 training images.
    return make_image_folder(tmp_path_factory.mktemp("steps") / "data", per_class=10)


def train(data, out, **recipe_fields):
    recipe = dataclasses.replace(get_recipe("cifar"), **{**PLAIN_SGD, **recipe_fields})
    report = fit(TrainOptions(model="inception_cifar", data=str(data), val_split=0.4, out=str(out), quiet=True,
                              device="cpu", deterministic=True, seed=3), recipe)
    return report, load_checkpoint(out / "last.pt")


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def update_norm(start: dict, end: dict) -> float:
    return float(torch.sqrt(sum(((end[k] - start[k]).double() ** 2).sum() for k in start
                                if start[k].is_floating_point())))


def test_accumulating_two_half_batches_equals_one_full_batch(data, tmp_path):
    whole_report, whole = train(data, tmp_path / "whole", batch_size=6)
    accum_report, accum = train(data, tmp_path / "accum", batch_size=3, accum_steps=2)
    small_report, small = train(data, tmp_path / "small", batch_size=3)
    assert whole_report["steps"] == accum_report["steps"] == 3
    assert small_report["steps"] == 6
    same = max_difference(whole["model"], accum["model"])
    assert same < 1e-5
    # The control: without accumulation the half batches make twice the steps and other weights.
    assert max_difference(whole["model"], small["model"]) > 100 * max(same, 1e-7)


def test_gradient_clipping_bounds_the_update_norm(data, tmp_path):
    # One step (batch = the 18 training images) with lr 1: the update is the (clipped) gradient itself.
    _, start = train(data, tmp_path / "start", batch_size=18, lr=1e-12)  # lr must be positive
    _, free = train(data, tmp_path / "free", batch_size=18, lr=1.0)
    _, clipped = train(data, tmp_path / "clipped", batch_size=18, lr=1.0, grad_clip=0.01)
    assert update_norm(start["model"], free["model"]) > 0.1
    assert update_norm(start["model"], clipped["model"]) == pytest.approx(0.01, rel=1e-4)


def test_channels_last_trains_in_nhwc_to_the_same_weights(data, tmp_path):
    _, plain = train(data, tmp_path / "plain", batch_size=6)
    _, nhwc = train(data, tmp_path / "nhwc", batch_size=6, channels_last=True)
    conv_weights = [k for k, v in nhwc["model"].items() if v.dim() == 4 and v.shape[-1] > 1]
    assert conv_weights and all(nhwc["model"][k].is_contiguous(memory_format=torch.channels_last)
                                for k in conv_weights)
    assert not plain["model"][conv_weights[0]].is_contiguous(memory_format=torch.channels_last)
    assert max_difference(plain["model"], nhwc["model"]) < 1e-4


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_cpu_optimizers_are_fused_and_match_the_reference_update(name):
    torch.manual_seed(0)
    model = create_model("inception_cifar")
    reference = create_model("inception_cifar")
    reference.load_state_dict(model.state_dict())
    recipe = dataclasses.replace(get_recipe("cifar"), optimizer=name, lr=0.01, weight_decay=1e-3)
    fused = build_optimizer(model, recipe)
    assert fused.defaults["fused"] is True
    plain_class = type(fused)
    plain = plain_class(reference.parameters(), lr=0.01, weight_decay=1e-3,
                        **({"momentum": recipe.momentum, "nesterov": recipe.nesterov} if name == "sgd" else {}))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    # Both optimizers step on the same gradients: the two updates round differently in the last bit, and the
    # next passes through a batch-4 BN net amplify that (6e-8 after one Adam step, 1e-4 in the gradients by the
    # third with oneDNN's AVX2 kernels), which would hide what is compared: the updates themselves.
    for _ in range(3):
        fused.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        for mine, theirs in zip(model.parameters(), reference.parameters(), strict=True):
            theirs.grad = mine.grad.clone()
        fused.step()
        plain.step()
    for (key, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), f"{key}: {float((a - b).abs().max())}"


def test_finetune_without_weights_warns(data, tmp_path, capsys):
    recipe = dataclasses.replace(get_recipe("finetune"), epochs=1, batch_size=6, img_size=32)
    fit(TrainOptions(model="inception_cifar", data=str(data), val_split=0.4, out=str(tmp_path / "ft"), quiet=True,
                     device="cpu"), recipe)
    assert "expects pretrained weights (--weights FILE)" in capsys.readouterr().err


@pytest.mark.parametrize("cache_bytes", [0, 2**30])
def test_a_small_validation_split_is_decoded_once(data, tmp_path, monkeypatch, cache_bytes):
    calls = []
    original = EvalTransform.__call__
    monkeypatch.setattr(EvalTransform, "__call__", lambda self, img: calls.append(1) or original(self, img))
    monkeypatch.setattr(train_module, "EVAL_CACHE_BYTES", cache_bytes)
    report, _ = train(data, tmp_path / "run", batch_size=6, epochs=3)
    assert report["epochs_run"] == 3
    validation_images = 12  # 3 classes x 10 images, val split 0.4
    assert len(calls) == (validation_images if cache_bytes else 3 * validation_images)
