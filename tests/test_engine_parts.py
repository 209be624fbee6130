"""Loss arithmetic, RMSpropTF against a hand computation, EMA updates, RNG snapshots."""

import math
import random

import numpy as np
import pytest
import torch

from inceptionnet.engine.ema import build_ema
from inceptionnet.engine.losses import AuxLoss
from inceptionnet.engine.optim import RMSpropTF
from inceptionnet.engine.reproducibility import restore_rng_state, rng_state


def cross_entropy_by_hand(row: list[float], target: int, smoothing: float = 0.0) -> float:
    log_sum = math.log(sum(math.exp(z) for z in row))
    log_probs = [z - log_sum for z in row]
    return -(1 - smoothing) * log_probs[target] - smoothing * sum(log_probs) / len(row)


LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
AUX1 = [[0.0, 1.0, 0.0], [1.5, -0.5, 0.0]]
AUX2 = [[-1.0, 0.0, 2.0], [0.3, 0.3, 0.3]]
TARGETS = [0, 2]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_total_is_main_plus_weight_times_each_aux(smoothing):
    def mean_ce(rows):
        return sum(cross_entropy_by_hand(r, t, smoothing) for r, t in zip(rows, TARGETS, strict=True)) / len(rows)

    total, main = AuxLoss(aux_weight=0.3, label_smoothing=smoothing)(
        torch.tensor(LOGITS), [torch.tensor(AUX1), torch.tensor(AUX2)], torch.tensor(TARGETS))
    assert main.item() == pytest.approx(mean_ce(LOGITS), rel=1e-6)
    assert total.item() == pytest.approx(mean_ce(LOGITS) + 0.3 * mean_ce(AUX1) + 0.3 * mean_ce(AUX2), rel=1e-6)


def test_no_aux_heads_or_zero_weight_gives_the_main_loss():
    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS)
    total, main = AuxLoss(aux_weight=0.0)(logits, [torch.tensor(AUX1)], targets)
    assert torch.equal(total, main)
    total, main = AuxLoss(aux_weight=0.4)(logits, [], targets)
    assert torch.equal(total, main)


def test_rmsprop_tf_matches_a_hand_computation():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = RMSpropTF([p], lr=0.1, decay=0.9, eps=1.0, momentum=0.9, weight_decay=0.01)
    grads = [[0.5, 1.0], [-0.2, 3.0]]
    value = [1.0, -2.0]
    mean_square = [1.0, 1.0]  # TF starts the mean square at one
    momentum = [0.0, 0.0]
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        for i in range(2):
            grad = g[i] + 0.01 * value[i]
            mean_square[i] = 0.9 * mean_square[i] + 0.1 * grad * grad
            momentum[i] = 0.9 * momentum[i] + 0.1 * grad / math.sqrt(mean_square[i] + 1.0)
            value[i] -= momentum[i]
        assert p.tolist() == pytest.approx(value, rel=1e-6)
    assert opt.state[p]["square_avg"].tolist() == pytest.approx(mean_square, rel=1e-6)


def test_rmsprop_tf_differs_from_torch_rmsprop():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(3))
    optimizers = {a: RMSpropTF([a], lr=0.1, momentum=0.0), b: torch.optim.RMSprop([b], lr=0.1, alpha=0.9, eps=1.0)}
    for p, opt in optimizers.items():
        p.grad = torch.full((3,), 2.0)
        opt.step()
    # TF: 1 - 0.1 * 2 / sqrt(0.9 + 0.4 + 1); torch: 1 - 0.1 * 2 / (sqrt(0.4) + 1)
    assert a[0].item() == pytest.approx(1 - 0.2 / math.sqrt(2.3))
    assert b[0].item() == pytest.approx(1 - 0.2 / (math.sqrt(0.4) + 1))


def test_ema_update_copies_first_then_averages():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema = build_ema(model, decay=0.75, warmup=False)
    ema.update_parameters(model)  # the first update copies the weights
    assert ema.module.weight.item() == 2.0
    with torch.no_grad():
        model.weight.fill_(6.0)
    ema.update_parameters(model)
    assert ema.module.weight.item() == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)


def test_ema_warmup_lowers_the_decay_early_and_averages_buffers():
    model = torch.nn.BatchNorm1d(1)
    ema = build_ema(model, decay=0.9999, warmup=True)
    ema.update_parameters(model)
    with torch.no_grad():
        model.running_mean.fill_(1.0)
    ema.update_parameters(model)  # n_averaged = 1: decay min(0.9999, 2 / 11)
    assert ema.module.running_mean.item() == pytest.approx(1 - 2 / 11)


def test_rng_snapshot_round_trips_every_generator_through_a_weights_only_file(tmp_path):
    torch.save({"rng": rng_state()}, tmp_path / "rng.pt")
    state = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
