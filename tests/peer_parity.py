"""Checks shared by the model tests: the model contract, minimum sizes, and parity with a peer
implementation (torchvision, timm, cadene) through real weight files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inceptionnet import InputSizeError, create_model, export_state_dict, get_spec, load_weights

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


def check_contract(name: str, size: int, aux_size: int | None = None) -> None:
    """Plain-Tensor forward in train and eval, aux logits only on request, no aux parameters without
    aux heads, reset_classifier on every head, in_chans, and the too-small-input error."""
    spec = get_spec(name)
    x = torch.randn(2, 3, size, size)
    plain = create_model(name, num_classes=5)
    assert not any(n.split(".")[0] in plain.aux_head_names for n, _ in plain.named_parameters())
    for train in (True, False):
        plain.train(train)
        out = plain(x)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 5)
    logits, aux = plain(x, with_aux=True)
    assert logits.shape == (2, 5) and aux == ()
    plain.reset_classifier(3)
    assert plain(x).shape == (2, 3)
    gray = create_model(name, num_classes=4, in_chans=1).eval()
    assert gray(torch.randn(1, 1, size, size)).shape == (1, 4)
    with pytest.raises(InputSizeError, match=f"{spec.min_input_size}x{spec.min_input_size}"):
        plain(torch.randn(1, 3, spec.min_input_size - 1, spec.min_input_size + 10))
    if aux_size is not None:
        with_aux = create_model(name, num_classes=5, aux_logits=True).eval()
        assert len(list(with_aux.aux_parameters())) > 0
        with torch.no_grad():
            logits, aux = with_aux(torch.randn(1, 3, aux_size, aux_size), with_aux=True)
            assert logits.shape == (1, 5) and [a.shape for a in aux] == [(1, 5)] * len(spec.aux_heads)
            with pytest.raises(InputSizeError, match=f"aux logits need inputs of at least {aux_size}x{aux_size}"):
                with_aux(torch.randn(1, 3, aux_size - 1, aux_size - 1), with_aux=True)
        with_aux.reset_classifier(2)
        assert len(with_aux.classifier_names) == 1 + len(spec.aux_heads)
        assert all(with_aux.get_submodule(n).out_features == 2 for n in with_aux.classifier_names)


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
