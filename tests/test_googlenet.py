"""GoogLeNet family: building blocks, Table 1 shapes, parameter and multiply-add counts, aux-head
gradients, and torchvision parity through files."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from inceptionnet import create_model, get_spec, load_weights, save_weights
from inceptionnet.analysis.summary import paper_table, summarize
from inceptionnet.models.blocks import inception_module, naive_inception_module

# The paper's Table 1: layer -> (output H, W, C), then #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5,
# pool proj for the Inception modules.
TABLE1 = [
    ("conv1", (112, 112, 64), None),
    ("maxpool1", (56, 56, 64), None),
    ("conv2+conv3", (56, 56, 192), None),
    ("maxpool2", (28, 28, 192), None),
    ("inception3a", (28, 28, 256), (64, 96, 128, 16, 32, 32)),
    ("inception3b", (28, 28, 480), (128, 128, 192, 32, 96, 64)),
    ("maxpool3", (14, 14, 480), None),
    ("inception4a", (14, 14, 512), (192, 96, 208, 16, 48, 64)),
    ("inception4b", (14, 14, 512), (160, 112, 224, 24, 64, 64)),
    ("inception4c", (14, 14, 512), (128, 128, 256, 24, 64, 64)),
    ("inception4d", (14, 14, 528), (112, 144, 288, 32, 64, 64)),
    ("inception4e", (14, 14, 832), (256, 160, 320, 32, 128, 128)),
    ("maxpool4", (7, 7, 832), None),
    ("inception5a", (7, 7, 832), (256, 160, 320, 32, 128, 128)),
    ("inception5b", (7, 7, 1024), (384, 192, 384, 48, 128, 128)),
    ("avgpool", (1, 1, 1024), None),
    ("dropout", (1, 1, 1024), None),
    ("fc", (1, 1, 1000), None),
]


# --- building blocks ---------------------------------------------------------------------------------

def test_inception_module_output_channels():
    module = inception_module(192, 64, 96, 128, 16, 32, 32)
    assert module(torch.randn(2, 192, 28, 28)).shape == (2, 64 + 128 + 32 + 32, 28, 28)
    assert module.branch3[1].conv.kernel_size == (5, 5)
    assert inception_module(192, 64, 96, 128, 16, 32, 32, kernel_5x5=3).branch3[1].conv.kernel_size == (3, 3)


def test_naive_module_keeps_every_input_channel_through_its_pool():
    x = torch.randn(2, 24, 9, 9)
    module = naive_inception_module(24, 8, 12, 4)
    out = module(x)
    assert out.shape == (2, 8 + 12 + 4 + 24, 9, 9)
    assert torch.equal(out[:, -24:], F.max_pool2d(x, 3, stride=1, padding=1))


# --- the paper's network -------------------------------------------------------------------------------

def test_googlenet_parameter_count_is_the_papers_network():
    assert sum(p.numel() for p in create_model("googlenet", aux_logits=False).parameters()) == 6_998_552
    with_aux = create_model("googlenet", aux_logits=True)
    aux = sum(p.numel() for p in with_aux.aux_parameters())
    # Each head: 1x1 conv 128 (+bias), FC 2048->1024, FC 1024->1000.
    heads = sum(c * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for c in (512, 528))
    assert aux == heads and sum(p.numel() for p in with_aux.parameters()) == 6_998_552 + heads


def test_googlenet_is_paper_exact_in_its_layers():
    model = create_model("googlenet", aux_logits=True)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.LocalResponseNorm) for m in model.modules()) == 2
    assert model.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert model.dropout.p == 0.4 and model.aux1.dropout.p == 0.7
    spec = get_spec("googlenet")
    assert (spec.aux_weight, spec.default_recipe, spec.preprocess.crop_pct) == (0.3, "googlenet-paper", 0.875)


def test_googlenet_table1_shapes_widths_and_multiply_adds_at_224():
    table = paper_table(create_model("googlenet", aux_logits=False), 224)
    got = [(r.name, (r.output[1], r.output[2], r.output[0]),
            tuple(r.columns.values()) if r.type == "inception" else None) for r in table.rows]
    assert got == TABLE1
    stem = next(r for r in table.rows if r.name == "conv2+conv3")
    assert stem.columns == {"#3x3 reduce": 64, "#3x3": 192} and stem.depth == 2
    assert table.macs == pytest.approx(1.58e9, rel=0.01)
    assert table.total_params == 6_998_552


def test_googlenet_aux_heads_use_the_paper_pool_at_224_and_adapt_elsewhere():
    model = create_model("googlenet", num_classes=10, aux_logits=True).eval()
    pooled = {}
    model.aux1.conv.register_forward_hook(lambda m, i, o: pooled.__setitem__("aux1", i[0]))
    features = {}
    model.inception4a.register_forward_hook(lambda m, i, o: features.__setitem__("4a", o))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224), with_aux=True)
        assert features["4a"].shape[-2:] == (14, 14)
        assert torch.equal(pooled["aux1"], F.avg_pool2d(features["4a"], 5, stride=3))
        _, aux = model(torch.randn(1, 3, 96, 96), with_aux=True)
        assert features["4a"].shape[-2:] == (6, 6) and pooled["aux1"].shape[-2:] == (4, 4) and aux[0].shape == (1, 10)
        # 4a maps of inputs above 224 (here 18x18, from 288) are pooled to 4x4 too.
        big = torch.randn(1, 512, 18, 18)
        assert model.aux1(big).shape == (1, 10)
        assert torch.equal(pooled["aux1"], F.adaptive_avg_pool2d(big, 4))


# --- aux heads (the rest of the model contract: test_model_contract.py) --------------------------------------

@pytest.mark.parametrize("name", ["googlenet", "googlenet_bn", "googlenet_tv"])
def test_main_and_aux_losses_reach_every_parameter(name):
    """With aux heads, main + aux_weight * aux losses reach every parameter."""
    spec = get_spec(name)
    model = create_model(name, num_classes=10, aux_logits=True).train()
    target = torch.tensor([1, 2])
    logits, aux = model(torch.randn(2, 3, spec.min_input_size, spec.min_input_size), with_aux=True)
    loss = F.cross_entropy(logits, target) + spec.aux_weight * sum(F.cross_entropy(a, target) for a in aux)
    loss.backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    for head in spec.aux_heads:
        assert any(p.grad.abs().sum() > 0 for p in getattr(model, head).parameters()), head


def test_googlenet_cifar_has_no_aux_heads_and_keeps_32x32_until_the_first_pool():
    model = create_model("googlenet_cifar", num_classes=10)
    rows = {r.name: r.output_shape for r in summarize(model, 32).visible_rows(depth=1)}
    assert rows["inception3b"] == (480, 32, 32) and rows["inception4e"] == (832, 16, 16)
    assert rows["inception5b"] == (1024, 8, 8)
    with pytest.raises(Exception, match="no auxiliary heads"):
        create_model("googlenet_cifar", aux_logits=True)


def test_googlenet_bn_is_the_tutorial_network_without_its_softmax_and_extra_fc():
    # The PyTorch ImageFolder tutorial prints 7,041,172 parameters for its InceptionV1 at 4 classes: convolutions
    # with bias (plus BN in the Inception modules, none in the stem) and an extra FC 1024x1024 before the classifier.
    model = create_model("googlenet_bn", num_classes=4, aux_logits=False)
    stem_convs = [model.conv1.conv, model.conv2.conv, model.conv3.conv]
    module_convs = [m for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Conv2d) and name.startswith("inception")]
    seed_biases = sum(c.out_channels for c in stem_convs + module_convs)
    stem_bn = sum(2 * c.out_channels for c in stem_convs)
    extra_fc = 1024 * 1024 + 1024
    assert sum(p.numel() for p in model.parameters()) == 7_041_172 - extra_fc - seed_biases + stem_bn
    logits = model.eval()(torch.randn(2, 3, 64, 64))
    assert not torch.allclose(logits.sum(1), torch.ones(2))  # logits, not probabilities


# --- torchvision parity --------------------------------------------------------------------------------

def _randomise_bn(model: torch.nn.Module) -> None:
    """Give BN layers non-trivial statistics and affine parameters, so parity tests see them."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for t in (m.running_mean, m.weight, m.bias):
                t.data.copy_(torch.randn(t.shape, generator=g) * 0.1)
            m.running_var.data.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.add_(1.0)


def _torchvision_outputs(tv: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's logits and both aux logits in eval mode (it returns aux only in train mode, where
    dropout is random): its aux modules are called on the 4a/4d features captured by hooks."""
    features = {}
    handles = [getattr(tv, n).register_forward_hook(lambda m, i, o, n=n: features.__setitem__(n, o))
               for n in ("inception4a", "inception4d")]
    with torch.no_grad():
        logits = tv(x)
        aux = (tv.aux1(features["inception4a"]), tv.aux2(features["inception4d"]))
    for h in handles:
        h.remove()
    return logits, *aux


def test_torchvision_parameter_count():
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    ours = create_model("googlenet_tv", aux_logits=False)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv.parameters()) == 6_624_904


@pytest.mark.parametrize("transform_input", [False, True])
def test_torchvision_weights_load_and_give_the_same_outputs(tmp_path, transform_input):
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False,
                                      transform_input=transform_input).eval()
    _randomise_bn(tv)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    x = torch.randn(2, 3, 112, 112)
    expected = _torchvision_outputs(tv, x)

    ours = create_model("googlenet_tv", aux_logits=True, transform_input=transform_input).eval()
    report = load_weights(ours, path, source="torchvision")
    assert report.ok and not report.random_aux
    with torch.no_grad():
        logits, aux = ours(x, with_aux=True)
        plain = ours(x)
    for got, want in zip((logits, *aux), expected, strict=True):
        assert (got - want).abs().max().item() <= 1e-5
    assert torch.equal(plain, logits)

    no_aux = create_model("googlenet_tv", aux_logits=False, transform_input=transform_input).eval()
    assert load_weights(no_aux, path, source="torchvision").ok
    with torch.no_grad():
        assert (no_aux(x) - expected[0]).abs().max().item() <= 1e-5


def test_our_weights_saved_as_torchvision_load_strictly_into_torchvision(tmp_path):
    ours = create_model("googlenet_tv", aux_logits=True, transform_input=True).eval()
    _randomise_bn(ours)
    path = tmp_path / "ours.pth"
    save_weights(ours, path, source="torchvision")
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False,
                                      transform_input=True).eval()
    tv.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        logits, aux = ours(x, with_aux=True)
    for got, want in zip((logits, *aux), _torchvision_outputs(tv, x), strict=True):
        assert (got - want).abs().max().item() <= 1e-5
