"""The fast path: fused inference graphs match the plain models, the training path keeps parameters."""

import pytest
import torch
from torch import nn

import inceptionnet
from inceptionnet import InputSizeError, create_model, get_spec, list_models
from inceptionnet.errors import ConfigError
from inceptionnet.fast import fuse_for_inference, optimize

MODELS = list_models()

pytestmark = pytest.mark.precision  # fp32 comparisons, rerun as both CPU kinds in CI


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Give every BN non-trivial eval statistics, so folding them is actually exercised."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
    return model.eval()


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.fixture(scope="module", params=MODELS)
def model_and_input(request):
    torch.manual_seed(0)
    model = _randomize_norms(create_model(request.param, num_classes=10))
    size = get_spec(request.param).min_input_size
    return request.param, model, torch.randn(2, 3, size, size)


def _assert_close(out: torch.Tensor, ref: torch.Tensor) -> None:
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 1e-4 * scale
    assert torch.equal(out.argmax(1), ref.argmax(1))


def test_fused_graph_matches_plain_model_with_fewer_convs(model_and_input):
    name, model, x = model_and_input
    fused = fuse_for_inference(model)
    with torch.no_grad():
        ref = model(x)
        out = fused(x)
    _assert_close(out, ref)
    assert _count(fused, nn.BatchNorm2d) == 0
    if name.startswith("resnet"):  # the ResNet baselines have no parallel 1x1 convolutions to merge
        assert _count(fused, nn.Conv2d) == _count(model, nn.Conv2d)
    else:
        assert _count(fused, nn.Conv2d) < _count(model, nn.Conv2d)


@pytest.mark.slow  # tracing + freezing + oneDNN weight packing: ~10 s per model on 2 cores
@pytest.mark.parametrize("name", ["googlenet_tv", "inception_v3"])
def test_optimize_jit_channels_last_matches_and_keeps_input_checks(name):
    model = _randomize_norms(create_model(name, num_classes=10))
    size = get_spec(name).min_input_size
    x = torch.randn(3, 3, size + 8, size + 8)
    fast = inceptionnet.optimize(model, example_input=x[:1])
    with torch.no_grad():
        ref = model(x)
    _assert_close(fast(x), ref)
    _assert_close(fast(x[:1]), ref[:1])  # another batch size than the traced one
    logits, aux = fast(x, with_aux=True)
    assert aux == () and logits.shape == (3, 10)
    with pytest.raises(InputSizeError, match=str(size)):
        fast(torch.randn(1, 3, size - 1, size - 1))
    assert model.training is False and _count(model, nn.BatchNorm2d) > 0  # the original is untouched


def test_optimize_eager_backend_is_a_plain_fx_graph_in_channels_last():
    model = _randomize_norms(create_model("googlenet", num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    fast = optimize(model, backend="eager")
    assert isinstance(fast.run, torch.fx.GraphModule)
    assert fast.run.get_submodule("merged_1x1_0").weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        _assert_close(fast(x), model(x))


def test_optimize_train_keeps_parameters_and_uses_channels_last():
    model = create_model("googlenet_bn", num_classes=10, aux_logits=True)
    names = [n for n, _ in model.named_parameters()]
    trained = optimize(model, mode="train")
    assert trained is model and [n for n, _ in model.named_parameters()] == names
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    logits, aux = model(torch.randn(2, 3, 96, 96), with_aux=True)
    (logits.sum() + sum(a.sum() for a in aux)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_optimize_rejects_unknown_mode_and_backend():
    model = create_model("googlenet", num_classes=10)
    with pytest.raises(ConfigError, match="mode"):
        optimize(model, mode="fastest")
    with pytest.raises(ConfigError, match="backend"):
        optimize(model, backend="tensorrt")
    with pytest.raises(ConfigError, match="inference-only"):
        optimize(model, mode="train", backend="jit")


def test_default_backend_is_the_fused_graph_without_autograd():
    model = create_model("inception_cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    default = optimize(model)
    assert isinstance(default.run, torch.fx.GraphModule)
    assert not default(x).requires_grad
    assert optimize(model, backend="eager")(x).requires_grad, "an explicit eager graph stays differentiable"
    with torch.no_grad():
        assert torch.allclose(default(x), model(x), atol=1e-5)
