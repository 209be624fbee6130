"""Features: create_model(features_only=True), stage indices, and feature_info against timm's. (Every
model's stages against its feature_info are checked in test_model_contract.py.)"""


import pytest
import timm
import torch

from inceptionnet import ConfigError, create_model


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
