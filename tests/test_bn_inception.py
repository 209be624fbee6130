"""BN-Inception: the paper's table (stage shapes), minimum and odd input sizes, and the Caffe-checkpoint layout of
`pretrainedmodels` (Cadene's `bninception`) checked against a reference written here from that
package's file: every key and shape, the parameter count, and the outputs of its forward."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inceptionnet import create_model, get_spec
from peer_parity import assert_close, assert_round_trip, check_min_size, load_from_peer, n_params

# pretrainedmodels/models/bninception.py, transcribed: (in, out) of each convolution per module. Kernels
# are 1x1 for `1x1`, `*_reduce` and `pool_proj`, 3x3 otherwise; in 3c and 4e `3x3` and `double_3x3_2`
# have stride 2 and the pool (max 3x3/2) passes through; 5b pools with max 3x3/1, the rest with avg 3x3/1.
CADENE_STEM = {"conv1_7x7_s2": (3, 64, 7), "conv2_3x3_reduce": (64, 64, 1), "conv2_3x3": (64, 192, 3)}
CADENE_MODULES = {
    "3a": {"1x1": (192, 64), "3x3_reduce": (192, 64), "3x3": (64, 64), "double_3x3_reduce": (192, 64),
           "double_3x3_1": (64, 96), "double_3x3_2": (96, 96), "pool_proj": (192, 32)},
    "3b": {"1x1": (256, 64), "3x3_reduce": (256, 64), "3x3": (64, 96), "double_3x3_reduce": (256, 64),
           "double_3x3_1": (64, 96), "double_3x3_2": (96, 96), "pool_proj": (256, 64)},
    "3c": {"3x3_reduce": (320, 128), "3x3": (128, 160), "double_3x3_reduce": (320, 64),
           "double_3x3_1": (64, 96), "double_3x3_2": (96, 96)},
    "4a": {"1x1": (576, 224), "3x3_reduce": (576, 64), "3x3": (64, 96), "double_3x3_reduce": (576, 96),
           "double_3x3_1": (96, 128), "double_3x3_2": (128, 128), "pool_proj": (576, 128)},
    "4b": {"1x1": (576, 192), "3x3_reduce": (576, 96), "3x3": (96, 128), "double_3x3_reduce": (576, 96),
           "double_3x3_1": (96, 128), "double_3x3_2": (128, 128), "pool_proj": (576, 128)},
    "4c": {"1x1": (576, 160), "3x3_reduce": (576, 128), "3x3": (128, 160), "double_3x3_reduce": (576, 128),
           "double_3x3_1": (128, 160), "double_3x3_2": (160, 160), "pool_proj": (576, 128)},
    "4d": {"1x1": (608, 96), "3x3_reduce": (608, 128), "3x3": (128, 192), "double_3x3_reduce": (608, 160),
           "double_3x3_1": (160, 192), "double_3x3_2": (192, 192), "pool_proj": (608, 128)},
    "4e": {"3x3_reduce": (608, 128), "3x3": (128, 192), "double_3x3_reduce": (608, 192),
           "double_3x3_1": (192, 256), "double_3x3_2": (256, 256)},
    "5a": {"1x1": (1056, 352), "3x3_reduce": (1056, 192), "3x3": (192, 320), "double_3x3_reduce": (1056, 160),
           "double_3x3_1": (160, 224), "double_3x3_2": (224, 224), "pool_proj": (1056, 128)},
    "5b": {"1x1": (1024, 352), "3x3_reduce": (1024, 192), "3x3": (192, 320), "double_3x3_reduce": (1024, 192),
           "double_3x3_1": (192, 224), "double_3x3_2": (224, 224), "pool_proj": (1024, 128)},
}
STRIDE_2 = ("3c", "4e")


def cadene_convs() -> dict[str, tuple[int, int, int, int]]:
    """name -> (in, out, kernel, stride) of every convolution of Cadene's BNInception, in file order."""
    convs = {name: (i, o, k, 2 if name == "conv1_7x7_s2" else 1) for name, (i, o, k) in CADENE_STEM.items()}
    for module, layers in CADENE_MODULES.items():
        for layer, (i, o) in layers.items():
            kernel = 1 if layer in ("1x1", "pool_proj") or layer.endswith("reduce") else 3
            stride = 2 if module in STRIDE_2 and layer in ("3x3", "double_3x3_2") else 1
            convs[f"inception_{module}_{layer}"] = (i, o, kernel, stride)
    return convs


def cadene_state_dict(num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """A random state_dict with the keys and shapes of Cadene's checkpoint (no BN batch counters: it
    was saved before PyTorch 0.4 had them)."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, (i, o, k, _) in cadene_convs().items():
        state[f"{name}.weight"] = torch.randn(o, i, k, k, generator=g) * (2.0 / (i * k * k)) ** 0.5
        state[f"{name}.bias"] = torch.randn(o, generator=g) * 0.1
        state[f"{name}_bn.weight"] = torch.rand(o, generator=g) + 0.5
        state[f"{name}_bn.bias"] = torch.randn(o, generator=g) * 0.1
        state[f"{name}_bn.running_mean"] = torch.randn(o, generator=g) * 0.1
        state[f"{name}_bn.running_var"] = torch.rand(o, generator=g) + 0.5
    state["last_linear.weight"] = torch.randn(num_classes, 1024, generator=g) * 0.03
    state["last_linear.bias"] = torch.zeros(num_classes)
    return state


def cadene_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Cadene's BNInception.forward in eval mode, written with functional ops over `state`."""
    convs = cadene_convs()

    def cbr(name, t):
        _, _, k, stride = convs[name]
        t = F.conv2d(t, state[f"{name}.weight"], state[f"{name}.bias"], stride=stride, padding=k // 2)
        t = F.batch_norm(t, state[f"{name}_bn.running_mean"], state[f"{name}_bn.running_var"],
                         state[f"{name}_bn.weight"], state[f"{name}_bn.bias"], training=False, eps=1e-5)
        return F.relu(t)

    def max_s2(t):
        return F.max_pool2d(t, 3, stride=2, ceil_mode=True)

    x = max_s2(cbr("conv1_7x7_s2", x))
    x = max_s2(cbr("conv2_3x3", cbr("conv2_3x3_reduce", x)))
    for module in CADENE_MODULES:
        p = f"inception_{module}_"
        b3 = cbr(p + "3x3", cbr(p + "3x3_reduce", x))
        bd = cbr(p + "double_3x3_2", cbr(p + "double_3x3_1", cbr(p + "double_3x3_reduce", x)))
        if module in STRIDE_2:
            x = torch.cat([b3, bd, max_s2(x)], 1)
            continue
        if module == "5b":
            pooled = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
        else:
            pooled = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        x = torch.cat([cbr(p + "1x1", x), b3, bd, cbr(p + "pool_proj", pooled)], 1)
    x = F.avg_pool2d(x, 7, stride=1, ceil_mode=True, count_include_pad=True).flatten(1)
    return F.linear(x, state["last_linear.weight"], state["last_linear.bias"])


class StateHolder(nn.Module):
    """A stand-in peer module holding Cadene's keys, for the round trip."""

    def __init__(self, state):
        super().__init__()
        self.state = {k: v.clone() for k, v in state.items()}

    def load_state_dict(self, state, strict=True):
        assert set(state) - {k for k in state if k.endswith("num_batches_tracked")} == set(self.state)
        self.state = {k: v.clone() for k, v in state.items() if k in self.state}

    def state_dict(self):
        return self.state


def test_caffe_layout_keys_shapes_and_parameter_count():
    ours = create_model("bn_inception_caffe")
    reference = cadene_state_dict()
    mine = {k: v.shape for k, v in ours.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert mine == {k: v.shape for k, v in reference.items()}
    assert n_params(ours) == 11_295_240
    assert n_params(ours) == sum(v.numel() for k, v in reference.items() if not k.endswith(("_mean", "_var")))


def test_caffe_parity_with_reference_forward(tmp_path):
    state = cadene_state_dict()
    ours = load_from_peer(StateHolder(state), "bn_inception_caffe", "cadene", tmp_path).eval()
    x = torch.randn(1, 3, 224, 224) * 60  # BGR, 0-255 minus the mean
    with torch.no_grad():
        assert_close(ours(x), cadene_forward(state, x))
    assert_round_trip(ours, StateHolder(state), "cadene", tmp_path)


def test_caffe_preprocess_is_bgr_0_255():
    p = get_spec("bn_inception_caffe").preprocess
    assert (p.channel_order, p.input_range, p.mean, p.std) == ("BGR", 255.0, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0))
    assert get_spec("bn_inception_caffe").peers == {"cadene": "bninception"}


def test_paper_variant_is_the_caffe_network_without_conv_biases():
    paper, caffe = create_model("bn_inception"), create_model("bn_inception_caffe")
    conv_channels = sum(o for _, o, _, _ in cadene_convs().values())
    assert n_params(caffe) - n_params(paper) == conv_channels


def test_stage_shapes_follow_the_paper_table():
    # Figure 5 of the BN paper at 224: 28x28x192 after the stem, 28x28x256 (3a), 28x28x320 (3b),
    # 14x14x576 (3c), 14x14 for 4a-4d, 7x7 after 4e, 7x7x1024 (5a, 5b); the 4c/4d/4e widths are
    # the sums of the table's filter counts (608, 608, 1056).
    model = create_model("bn_inception").eval()
    expected = {"3a": (256, 28), "3b": (320, 28), "3c": (576, 14), "4a": (576, 14), "4b": (576, 14),
                "4c": (608, 14), "4d": (608, 14), "4e": (1056, 7), "5a": (1024, 7), "5b": (1024, 7)}
    with torch.no_grad():
        x = model.stem(torch.randn(1, 3, 224, 224))
        assert x.shape == (1, 192, 28, 28)
        for module, (channels, side) in expected.items():
            x = getattr(model, f"inception_{module}")(x)
            assert x.shape == (1, channels, side, side), module
        caffe = create_model("bn_inception_caffe").eval()
        assert caffe.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 1024, 7, 7)


@pytest.mark.parametrize("name", ["bn_inception", "bn_inception_caffe"])
def test_min_size_and_odd_grids(name):
    model = create_model(name).eval()
    check_min_size(model, 7)
    # Odd grids at the stride-2 modules 3c/4e (e.g. 225 -> 29 at 3c) must run too, not only the
    # even ones of 224, and keep the pooled and convolved branches the same size.
    with torch.no_grad():
        for size in (*range(8, 80, 7), 225, 227):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 1000), size
