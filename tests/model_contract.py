"""Checks of the model contract (docs/design.md) shared by the model test files."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inceptionnet import InputSizeError, create_model, get_spec


def batch(size: int, in_chans: int = 3, n: int = 2) -> torch.Tensor:
    return torch.randn(n, in_chans, size, size)


def check_output_shapes(name: str, num_classes: int) -> None:
    """Logits of (N, num_classes) as a plain Tensor in train and eval mode, at the default and minimum
    sizes; aux logits only with `with_aux=True`. (Batch 2 where train-mode BN sees 1x1 maps.)"""
    spec = get_spec(name)
    model = create_model(name, num_classes=num_classes, aux_logits=bool(spec.aux_heads))
    default, minimum = spec.default_input_size, spec.min_input_size
    with torch.no_grad():
        for size, plain_in_training, n in ((default, True, 1), (minimum, False, 2)):
            model.train(plain_in_training)
            out = model(batch(size, n=n))
            assert type(out) is torch.Tensor and out.shape == (n, num_classes), (size, plain_in_training)
            model.train(not plain_in_training)
            logits, aux = model(batch(size, n=n), with_aux=True)
            assert type(logits) is torch.Tensor and logits.shape == (n, num_classes), (size, plain_in_training)
            assert len(aux) == len(spec.aux_heads) and all(a.shape == (n, num_classes) for a in aux)


def check_too_small_input(name: str) -> None:
    """One pixel below the minimum: InputSizeError naming the minimum, raised before any layer runs."""
    spec = get_spec(name)
    model = create_model(name, num_classes=10).eval()
    calls = []
    first_layer = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first_layer.register_forward_hook(lambda *_: calls.append(1))
    small = spec.min_input_size - 1
    with pytest.raises(InputSizeError, match=f"at least {spec.min_input_size}x{spec.min_input_size}"):
        model(torch.randn(1, 3, small, spec.default_input_size))
    assert not calls
    model(batch(spec.min_input_size, n=1))
    assert calls


def check_no_aux_parameters(name: str) -> None:
    """Built without aux heads, the model has no aux modules or parameters, and with_aux gives ()."""
    spec = get_spec(name)
    model = create_model(name, aux_logits=False)
    assert not list(model.aux_parameters())
    assert not any(n.split(".")[0] in spec.aux_heads for n, _ in model.named_parameters())
    _, aux = model.eval()(batch(spec.min_input_size), with_aux=True)
    assert aux == ()


def check_reset_classifier(name: str) -> None:
    """reset_classifier(n) gives every head (main and aux) n outputs; 0 gives pooled features."""
    spec = get_spec(name)
    model = create_model(name, num_classes=1000, aux_logits=bool(spec.aux_heads)).eval()
    model.reset_classifier(7)
    with torch.no_grad():
        logits, aux = model(batch(spec.min_input_size), with_aux=True)
    assert logits.shape == (2, 7) and all(a.shape == (2, 7) for a in aux)
    assert len(aux) == len(spec.aux_heads)
    model.reset_classifier(0)
    with torch.no_grad():
        features = model(batch(spec.min_input_size))
    assert features.dim() == 2 and features.shape[0] == 2 and features.shape[1] > 7


def check_in_chans(name: str, in_chans: int = 1) -> None:
    """A model built for `in_chans` channels takes them, and refuses 3-channel input."""
    spec = get_spec(name)
    model = create_model(name, num_classes=5, in_chans=in_chans).eval()
    with torch.no_grad():
        assert model(batch(spec.min_input_size, in_chans)).shape == (2, 5)
    with pytest.raises(InputSizeError, match=f"{in_chans} input channels"):
        model(batch(spec.min_input_size, 3))


def check_aux_gradients(name: str, size: int) -> None:
    """With aux heads, main + aux_weight * aux losses reach every parameter."""
    spec = get_spec(name)
    model = create_model(name, num_classes=10, aux_logits=True).train()
    target = torch.tensor([1, 2])
    logits, aux = model(batch(size), with_aux=True)
    loss = F.cross_entropy(logits, target) + spec.aux_weight * sum(F.cross_entropy(a, target) for a in aux)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad
    for head in spec.aux_heads:
        assert any(p.grad.abs().sum() > 0 for p in getattr(model, head).parameters()), head
