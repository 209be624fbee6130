"""Inception-v4: the paper's stage shapes, minimum sizes, the TF-slim aux head, and parity
with timm through real weight files."""

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


def aux_head_params(in_ch: int, num_classes: int) -> int:
    """TF-slim's aux head: 1x1 conv 128 + BN, 5x5 conv 768 + BN, linear."""
    return in_ch * 128 + 2 * 128 + 128 * 768 * 25 + 2 * 768 + 768 * num_classes + num_classes


@pytest.fixture(scope="module")
def peer():
    torch.manual_seed(1)
    return randomize_bn(timm.create_model("inception_v4", pretrained=False)).eval()


def test_parameters_and_keys_match_timm(peer):
    ours = create_model("inception_v4")
    assert n_params(ours) == n_params(peer) == 42_679_816
    assert set(ours.state_dict()) == set(peer.state_dict())
    with_aux = create_model("inception_v4", aux_logits=True)
    assert n_params(with_aux) == 42_679_816 + aux_head_params(1024, 1000)
    assert all(k.startswith("AuxLogits.") for k in set(with_aux.state_dict()) - set(peer.state_dict()))


def test_stage_shapes_at_299():
    # Paper Fig. 9 (and the Inception-v4 block-shape article): stem 35x35x384, 4 x A 35x35x384, Reduction-A 17x17x1024,
    # 7 x B 17x17x1024, Reduction-B 8x8x1536, 3 x C 8x8x1536.
    model = create_model("inception_v4").eval()
    shapes = trace_shapes(model.features, torch.randn(1, 3, 299, 299))
    assert shapes[5] == shapes[9] == (384, 35, 35)
    assert shapes[10] == shapes[17] == (1024, 17, 17)
    assert shapes[18] == shapes[21] == (1536, 8, 8)
    assert len(shapes) == 22


def test_min_input_size():
    check_min_size(create_model("inception_v4"), 75)  # the aux head's 299 is checked in test_model_contract


def test_timm_parity_and_round_trip(tmp_path, peer):
    ours = load_from_peer(peer, "inception_v4", "timm", tmp_path, suffix=".safetensors").eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert_close(ours(x), peer(x))
    assert_round_trip(ours, peer, "timm", tmp_path)


def test_timm_weights_load_into_model_with_aux_head(tmp_path, peer):
    # timm has no aux head: its file loads, the aux head keeps its initialisation (with a warning),
    # and the main output is unchanged.
    with pytest.warns(UserWarning, match="AuxLogits"):
        ours = load_from_peer(peer, "inception_v4", "timm", tmp_path, aux_logits=True).eval()
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        assert_close(ours(x), peer(x))
