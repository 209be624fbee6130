"""The TF2 course's compact Inception and the ResNet baselines: shapes, parameter counts and loading
torchvision's ResNet weights (the model contract: test_model_contract.py)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from inceptionnet import create_model, get_spec, load_weights
from inceptionnet.analysis.summary import summarize

IMAGENET_RESNETS = ("resnet18", "resnet34")


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_inception_cifar_follows_the_tf2_course_block_layout():
    model = create_model("inception_cifar", num_classes=10)
    rows = {r.name: r for r in summarize(model, 32).rows}
    # Stem of 16; blocks of width 16 (stride 2, 1) then 32 (stride 2, 1); each block concatenates 4 branches.
    assert rows["stem"].output_shape == (16, 32, 32)
    assert [rows[f"blocks.{i}"].output_shape for i in range(4)] == [(64, 16, 16), (64, 16, 16),
                                                                    (128, 8, 8), (128, 8, 8)]
    block = model.blocks[0]
    # The stride sits in every branch's 1x1 convolution, after the pool in the pool branch.
    assert [block.branch1.conv.stride, block.branch2[0].conv.stride, block.branch3[0].conv.stride,
            block.branch4[1].conv.stride] == [(2, 2)] * 4
    assert block.branch2[1].conv.stride == (1, 1) and block.branch3[1].conv.kernel_size == (5, 5)
    assert model.fc.in_features == 128
    assert get_spec("inception_cifar").default_recipe == "cifar"


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_cifar_resnets_are_torchvisions_with_a_3x3_stem(name):
    tv = getattr(torchvision.models, name)(weights=None, num_classes=10)
    ours = create_model(f"{name}_cifar", num_classes=10)
    assert _params(ours) == _params(tv) - 64 * 3 * (7 * 7 - 3 * 3)
    rows = {r.name: r.output_shape for r in summarize(ours, 32).rows}
    assert [rows[f"layer{i}"] for i in range(1, 5)] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert ours.layer2[0].downsample[0].kernel_size == (1, 1)


@pytest.mark.parametrize("name", IMAGENET_RESNETS)
def test_imagenet_resnets_load_torchvision_weights(tmp_path, name):
    tv = getattr(torchvision.models, name)(weights=None).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(tv.state_dict(), path)
    ours = create_model(name).eval()
    assert _params(ours) == _params(tv)
    assert load_weights(ours, path, source="torchvision").ok
    assert get_spec(name).peers == {"torchvision": name}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - tv(x)).abs().max().item() <= 1e-5
