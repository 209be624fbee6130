"""The model contract (docs/design.md), checked for every registered model: plain-Tensor logits, aux logits
only on request and only where built, reset_classifier on every head, in_chans, the input-size error,
feature_info against forward_intermediates, and forward_features as what the head reads.

Each model is built twice (with its aux heads, and without them for one input channel) and run at its
minimum input size, batch 2 (train-mode BN must see more than one value per channel at 1x1 maps), in one
thread (on two shared cores, two spin-waiting threads made this file several times slower)."""

from __future__ import annotations

import math

import pytest
import torch

from inceptionnet import ConfigError, InputSizeError, create_model, get_spec, list_models
from inceptionnet.models.features import FeatureExtractor

NUM_CLASSES = 5

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(size: int, in_chans: int = 3, n: int = 2) -> torch.Tensor:
    return torch.randn(n, in_chans, size, size)


def check_logits_and_aux(name: str, model: torch.nn.Module) -> None:
    """(N, num_classes) plain Tensors in train and eval mode; aux logits, one per spec aux head, only with
    `with_aux=True` and at the size the aux heads need (a clear error below it)."""
    spec = get_spec(name)
    size = spec.min_input_size
    with torch.no_grad():
        for training in (True, False):
            out = model.train(training)(batch(size))
            assert type(out) is torch.Tensor and out.shape == (2, NUM_CLASSES), training
        model.eval()
        aux_size = getattr(model, "aux_min_input_size", size) if spec.aux_heads else size
        if aux_size > size:
            with pytest.raises(InputSizeError, match=f"aux logits need inputs of at least {aux_size}x{aux_size}"):
                model(batch(size), with_aux=True)
        logits, aux = model(batch(aux_size, n=1), with_aux=True)
    assert type(logits) is torch.Tensor and logits.shape == (1, NUM_CLASSES)
    assert len(aux) == len(spec.aux_heads) and all(a.shape == (1, NUM_CLASSES) for a in aux)
    assert tuple(model.aux_head_names) == spec.aux_heads
    assert len(list(model.aux_parameters())) > 0 or not spec.aux_heads


def check_feature_stages(model: torch.nn.Module, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """forward_intermediates gives feature_info's stages (channels; strides as powers of two) and ends with
    forward_features. Returns (input, final feature map)."""
    info = model.feature_info
    reductions = [stage["reduction"] for stage in info]
    assert len(info) >= 3 and reductions == sorted(reductions) and all(r & (r - 1) == 0 for r in reductions)
    x = batch(size, model.in_chans, n=1)
    with torch.no_grad():
        final, stages = model.forward_intermediates(x)
        features = model.forward_features(x)
    assert len(stages) == len(info)
    for stage, out in zip(info, stages, strict=True):
        assert out.shape[:2] == (1, stage["num_chs"]), stage
        # VALID convolutions (v3, v4, Inception-ResNet) lose a few pixels on the way: at most half the ideal size.
        ideal = size / stage["reduction"]
        assert ideal / 2 - 1 <= out.shape[2] <= math.ceil(ideal), (stage, out.shape)
    assert torch.equal(final, stages[-1]) and torch.equal(final, features)
    return x, final


@pytest.mark.parametrize("name", list_models())
def test_logits_aux_features_and_heads(name):
    spec = get_spec(name)
    model = create_model(name, num_classes=NUM_CLASSES, aux_logits=bool(spec.aux_heads)).eval()
    size = spec.min_input_size
    check_logits_and_aux(name, model)
    x, final = check_feature_stages(model, size)
    model.reset_classifier(7)
    assert len(model.classifier_names) == 1 + len(spec.aux_heads)
    assert all(model.get_submodule(n).out_features == 7 for n in model.classifier_names)
    with torch.no_grad():
        assert model(batch(size)).shape == (2, 7)
    # With an identity head the model returns the pooled forward_features: the head reads exactly those.
    model.reset_classifier(0)
    model.tta = "none"  # inception_cifar_fast would also average in the features of shifted and mirrored views
    with torch.no_grad():
        pooled = model(x)
    max_pooled = isinstance(getattr(model, "pool", None), torch.nn.AdaptiveMaxPool2d)
    torch.testing.assert_close(pooled, final.amax((2, 3)) if max_pooled else final.mean((2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list_models())
def test_without_aux_one_channel_input_size_and_feature_extractor(name):
    spec = get_spec(name)
    if not spec.aux_heads:
        with pytest.raises(ConfigError, match="no auxiliary heads"):
            create_model(name, aux_logits=True)
    model = create_model(name, num_classes=3, in_chans=1, aux_logits=False).eval()
    assert not list(model.aux_parameters())
    assert not any(n.split(".")[0] in spec.aux_heads for n, _ in model.named_parameters())
    size = spec.min_input_size
    with torch.no_grad():
        logits, aux = model(batch(size, 1), with_aux=True)
    assert logits.shape == (2, 3) and aux == ()
    with pytest.raises(InputSizeError, match="1 input channels"):
        model(batch(size, 3))
    # One pixel below the minimum: an error naming the minimum, before any layer runs.
    calls = []
    next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(InputSizeError, match=f"at least {size}x{size}"):
        model(torch.randn(1, 1, size - 1, spec.default_input_size))
    assert not calls
    # The feature extractor that create_model(features_only=True) wraps a model in: the chosen stages.
    x = batch(size, 1, n=1)
    with torch.no_grad():
        stages = model.forward_intermediates(x, intermediates_only=True)
        extractor = FeatureExtractor(model, out_indices=(1, -1))
        maps = extractor(x)
    assert extractor.feature_info == [model.feature_info[1], model.feature_info[-1]]
    assert len(maps) == 2 and torch.equal(maps[0], stages[1]) and torch.equal(maps[1], stages[-1])
