"""Features from every registered model: forward_features, forward_intermediates, feature_info and
create_model(features_only=True), checked over the whole registry and against timm's feature_info."""

import math

import pytest
import timm
import torch

from inceptionnet import ConfigError, create_model, get_spec, list_models


@pytest.mark.parametrize("name", list_models())
def test_stages_match_feature_info(name):
    """Every stage has feature_info's channels and stride; forward_features is the last stage, and
    pooled it is what the model's head reads; features_only gives the chosen stages with the same trunk."""
    torch.manual_seed(0)
    size = get_spec(name).min_input_size
    model = create_model(name).eval()
    info = model.feature_info
    assert len(info) >= 3
    reductions = [stage["reduction"] for stage in info]
    assert reductions == sorted(reductions) and all(r & (r - 1) == 0 for r in reductions)  # powers of 2
    extractor = create_model(name, features_only=True, out_indices=(1, -1)).eval()
    missing, _ = extractor.load_state_dict({"model." + k: v for k, v in model.state_dict().items()}, strict=False)
    assert not missing
    model.reset_classifier(0)  # identity head: model(x) gives pooled features
    model.flip_tta = False  # inception_cifar_fast would also average in the mirror image's features
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        final, stages = model.forward_intermediates(x)
        pooled = model(x)
        features = model.forward_features(x)
        maps = extractor(x)
    assert len(stages) == len(info)
    for stage, out in zip(info, stages, strict=True):
        assert out.shape[:2] == (1, stage["num_chs"]), stage
        # VALID convolutions (v3, v4, Inception-ResNet) lose a few pixels on the way: at most half the ideal size.
        ideal = size / stage["reduction"]
        assert ideal / 2 - 1 <= out.shape[2] <= math.ceil(ideal), (stage, out.shape)
    assert torch.equal(final, stages[-1]) and torch.equal(final, features)
    max_pooled = isinstance(getattr(model, "pool", None), torch.nn.AdaptiveMaxPool2d)
    torch.testing.assert_close(pooled, final.amax((2, 3)) if max_pooled else final.mean((2, 3)), rtol=1e-5, atol=1e-5)
    assert extractor.feature_info == [info[1], info[-1]]
    assert len(maps) == 2 and torch.equal(maps[0], stages[1]) and torch.equal(maps[1], stages[-1])


def test_extractor_keys_are_the_model_trunk():
    full = create_model("resnet18")
    extractor = create_model("resnet18", features_only=True)
    trunk = {k for k in full.state_dict() if not k.startswith("fc.")}
    assert {k[len("model."):] for k in extractor.state_dict()} == trunk


@pytest.mark.parametrize("name", ["inception_v3", "inception_v4", "inception_resnet_v2", "resnet18"])
def test_feature_info_matches_timm(name):
    ours = create_model(name).feature_info
    theirs = timm.create_model(name, pretrained=False).feature_info
    assert [(s["num_chs"], s["reduction"]) for s in ours] == [(s["num_chs"], s["reduction"]) for s in theirs]
    if not name.startswith("resnet"):  # same layout, same module names
        assert [s["module"] for s in ours] == [s["module"] for s in theirs]


def test_bad_indices_name_the_stage_count():
    model = create_model("googlenet_cifar")
    with pytest.raises(ConfigError, match="4 stages"):
        model.forward_intermediates(torch.randn(1, 3, 32, 32), indices=[7])
    with pytest.raises(ConfigError, match="4 feature stages"):
        create_model("googlenet_cifar", features_only=True, out_indices=9)
