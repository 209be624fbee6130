"""Inception-v3: paper stage shapes, minimum sizes, and parity with torchvision and timm
through real weight files."""

import pytest
import timm
import torch
import torchvision

from inceptionnet import ConfigError, create_model, get_spec
from peer_parity import (
    assert_close,
    assert_round_trip,
    check_min_size,
    load_from_peer,
    n_params,
    randomize_bn,
    trace_shapes,
)


def tv_inception_v3(**kwargs):
    return torchvision.models.inception_v3(weights=None, init_weights=False, **kwargs)


@pytest.fixture(scope="module")
def timm_aux():
    torch.manual_seed(1)
    return randomize_bn(timm.create_model("inception_v3", pretrained=False, aux_logits=True)).eval()


def test_parameter_counts_and_keys_match_both_peers(timm_aux):
    tv = tv_inception_v3(aux_logits=True)
    ours = create_model("inception_v3", aux_logits=True)
    assert n_params(ours) == n_params(tv) == 27_161_264
    assert n_params(create_model("inception_v3")) == 23_834_568
    assert set(ours.state_dict()) == set(tv.state_dict()) == set(timm_aux.state_dict())


def test_transform_input_needs_rgb():
    with pytest.raises(ConfigError, match="in_chans=3"):
        create_model("inception_v3", in_chans=1, transform_input=True)


def test_stage_shapes_at_299():
    # Paper Table 1: 35x35x288 after the 3 x Inception (Fig. 5), 17x17x768 after 5 x Fig. 6,
    # 8x8x2048 after 2 x Fig. 7.
    model = create_model("inception_v3").eval()
    shapes = dict(zip(model.stage_names, trace_shapes([layer for _, layer in model.feature_layers()],
                                                        torch.randn(1, 3, 299, 299)), strict=True))
    assert shapes["Conv2d_4a_3x3"] == (192, 71, 71)
    assert shapes["Mixed_5d"] == (288, 35, 35)
    assert shapes["Mixed_6a"] == shapes["Mixed_6e"] == (768, 17, 17)
    assert shapes["Mixed_7c"] == (2048, 8, 8)


def test_min_input_size_without_and_with_aux():
    model = create_model("inception_v3", aux_logits=True)
    assert get_spec("inception_v3").min_input_size == 75
    check_min_size(model, 75)
    with torch.no_grad():  # the aux head's 299 limit itself is checked in test_model_contract
        # 298 leaves a 16x16 grid at Mixed_6e, which the aux head's pool + 5x5 conv cannot take;
        # 299 leaves 17x17, which it can (the aux run at 299 is in test_model_contract).
        with pytest.raises(RuntimeError):
            model.AuxLogits(torch.randn(1, 768, 16, 16))
        assert model.AuxLogits(torch.randn(1, 768, 17, 17)).shape == (1, 1000)


def test_torchvision_parity_eval_and_train_with_aux(tmp_path):
    # torchvision returns aux logits only in train mode; dropout off on both so train mode is deterministic.
    peer = randomize_bn(tv_inception_v3(aux_logits=True, transform_input=True, dropout=0.0))
    ours = load_from_peer(peer, "inception_v3", "torchvision", tmp_path, aux_logits=True, transform_input=True,
                          drop_rate=0.0)
    with torch.no_grad():
        x = torch.randn(2, 3, 107, 107)
        assert_close(ours.eval()(x), peer.eval()(x))
        x = torch.randn(2, 3, 299, 299)
        ref = peer.train()(x)
        logits, (aux,) = ours.train()(x, with_aux=True)
    assert_close(logits, ref.logits)
    assert_close(aux, ref.aux_logits)
    assert_round_trip(ours, peer, "torchvision", tmp_path)


def test_timm_parity_eval_with_aux(tmp_path, timm_aux):
    ours = load_from_peer(timm_aux, "inception_v3", "timm", tmp_path, aux_logits=True).eval()
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        ref_logits, ref_aux = timm_aux(x)
        logits, (aux,) = ours(x, with_aux=True)
    assert_close(logits, ref_logits)
    assert_close(aux, ref_aux)
    assert_round_trip(ours, timm_aux, "timm", tmp_path)


def test_timm_file_with_aux_loads_into_model_without_aux(tmp_path, timm_aux):
    ours = load_from_peer(timm_aux, "inception_v3", "timm", tmp_path).eval()
    assert ours.AuxLogits is None
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():  # timm's aux model always runs its aux head, which needs 299: skip it
        ref = timm_aux.forward_head(timm_aux.forward_postaux(timm_aux.forward_preaux(x)))
        assert_close(ours(x), ref)
