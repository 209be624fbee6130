"""Checks shared by the model tests: minimum sizes, and parity with a peer implementation (torchvision,
timm, cadene) through real weight files. (The model contract is test_model_contract.py's.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inceptionnet import InputSizeError, create_model, export_state_dict, load_weights

TOLERANCE = 1e-5  # max |ours - peer| relative to max |peer|


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def max_diff(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max absolute difference, the same relative to the output scale max|ref|)."""
    diff = (ours - ref).abs().max().item()
    return diff, diff / ref.abs().max().item()


def assert_close(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    assert ours.shape == ref.shape
    diff, rel = max_diff(ours, ref)
    assert rel <= TOLERANCE, f"max abs diff {diff:.3g} ({rel:.3g} of the output scale)"
    return diff, rel


def load_from_peer(peer: nn.Module, name: str, source: str, tmp_path, suffix: str = ".pth", **kwargs) -> nn.Module:
    """Save `peer`'s state_dict to a file and load it into a fresh `name` via `load_weights`."""
    path = tmp_path / f"peer{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, str(path))
    else:
        torch.save(peer.state_dict(), path)
    ours = create_model(name, **kwargs)
    assert load_weights(ours, path, source=source).ok
    return ours


def assert_round_trip(ours: nn.Module, peer: nn.Module, source: str, tmp_path) -> None:
    """ours -> peer layout -> peer module -> file -> ours again: every tensor bit-identical."""
    peer.load_state_dict(export_state_dict(ours, source), strict=True)
    path = tmp_path / "round_trip.pt"
    torch.save(peer.state_dict(), path)
    again = create_model(ours.spec.name, num_classes=ours.num_classes, aux_logits=ours.aux_logits)
    load_weights(again, path, source=source)
    original, returned = ours.state_dict(), again.state_dict()
    assert original.keys() == returned.keys()
    for key, value in original.items():
        assert torch.equal(value, returned[key]), key


def randomize_bn(model: nn.Module) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters, so eval-mode parity tests them."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model


def check_min_size(model: nn.Module, min_size: int) -> None:
    """`min_size` runs; one pixel less is refused with InputSizeError and really fails in the layers."""
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, model.in_chans, min_size, min_size))
        with pytest.raises(InputSizeError, match=f"at least {min_size}x{min_size}"):
            model(torch.randn(1, model.in_chans, min_size - 1, min_size - 1))
        with pytest.raises(RuntimeError):
            model.forward_head(torch.randn(1, model.in_chans, min_size - 1, min_size - 1), False)


def trace_shapes(layers, x: torch.Tensor) -> list[tuple[int, int, int]]:
    """(C, H, W) after each of `layers` applied in turn."""
    shapes = []
    with torch.no_grad():
        for layer in layers:
            x = layer(x)
            shapes.append(tuple(x.shape[1:]))
    return shapes
