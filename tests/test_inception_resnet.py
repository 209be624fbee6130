"""Inception-ResNet-v2 (timm parity through real weight files, aux head, residual scales) and
Inception-ResNet-v1 (the paper's stage shapes)."""

import pytest
import timm
import torch

from inceptionnet import create_model
from peer_parity import (
    assert_close,
    assert_round_trip,
    check_min_size,
    load_from_peer,
    n_params,
    randomize_bn,
    trace_shapes,
)
from test_inception_v4 import aux_head_params


@pytest.fixture(scope="module")
def peer():
    torch.manual_seed(1)
    return randomize_bn(timm.create_model("inception_resnet_v2", pretrained=False)).eval()


def stages(model):
    return [layer for _, layer in model.feature_layers()]


def test_v2_parameters_and_keys_match_timm(peer):
    ours = create_model("inception_resnet_v2")
    assert n_params(ours) == n_params(peer) == 55_843_464
    assert set(ours.state_dict()) == set(peer.state_dict())
    with_aux = create_model("inception_resnet_v2", aux_logits=True)
    assert n_params(with_aux) == 55_843_464 + aux_head_params(1088, 1000)


def test_v2_stage_shapes_at_299():
    # The released layout: 35x35x320, 17x17x1088, 8x8x2080, then the 1x1 conv to 1536.
    model = create_model("inception_resnet_v2").eval()
    shapes = dict(zip((*model.stem_names, "repeat", "mixed_6a", "repeat_1", "mixed_7a", "repeat_2",
                       *model.tail_names), trace_shapes(stages(model), torch.randn(1, 3, 299, 299)), strict=True))
    assert shapes["mixed_5b"] == shapes["repeat"] == (320, 35, 35)
    assert shapes["mixed_6a"] == shapes["repeat_1"] == (1088, 17, 17)
    assert shapes["mixed_7a"] == shapes["block8"] == (2080, 8, 8)
    assert shapes["conv2d_7b"] == (1536, 8, 8)


def test_v1_stage_shapes_at_299_as_the_paper():
    # Paper Figs. 14-15: stem 35x35x256, 5 x A 35x35x256, Reduction-A 17x17x896, 10 x B 17x17x896,
    # Reduction-B 8x8x1792, 5 x C 8x8x1792.
    model = create_model("inception_resnet_v1").eval()
    assert (len(model.repeat), len(model.repeat_1), len(model.repeat_2)) == (5, 10, 5)
    shapes = trace_shapes(stages(model), torch.randn(1, 3, 299, 299))
    assert shapes[6:] == [(256, 35, 35), (256, 35, 35), (896, 17, 17), (896, 17, 17), (1792, 8, 8), (1792, 8, 8)]


@pytest.mark.parametrize("name", ["inception_resnet_v2", "inception_resnet_v1"])
def test_min_input_size(name):
    check_min_size(create_model(name), 75)


def test_v2_timm_parity_and_round_trip(tmp_path, peer):
    ours = load_from_peer(peer, "inception_resnet_v2", "timm", tmp_path).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert_close(ours(x), peer(x))
    assert_round_trip(ours, peer, "timm", tmp_path)


def test_residual_scales_are_configurable(tmp_path, peer):
    default = create_model("inception_resnet_v2")
    assert [b.scale for b in (default.repeat[0], default.repeat_1[0], default.repeat_2[0])] == [0.17, 0.10, 0.20]
    assert default.block8.scale == 1.0
    scaled = load_from_peer(peer, "inception_resnet_v2", "timm", tmp_path, scales=(0.3, 0.2, 0.1)).eval()
    assert [b.scale for b in (scaled.repeat[-1], scaled.repeat_1[-1], scaled.repeat_2[-1])] == [0.3, 0.2, 0.1]
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        assert not torch.allclose(scaled(x), peer(x))
