"""Metrics and ensemble averaging against hand computations on fixed probabilities and logits."""

import math

import pytest
import torch

from inceptionnet import ConfigError, Preprocess
from inceptionnet.evaluate.ensemble import Member, average_probabilities, check_same_classes
from inceptionnet.evaluate.metrics import ClassificationMetrics, write_confusion_csv

# Four images, three classes. Predictions: 0 (right), 1 (wrong, 2 is second), 2 (right), 0 (wrong, 1 is last).
PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.3, 0.5], [0.5, 0.1, 0.4]])
TARGETS = torch.tensor([0, 2, 2, 1])
NAMES = ["cat", "dog", "owl"]


def test_metrics_match_hand_computation():
    m = ClassificationMetrics(3, topk=2)
    m.update(PROBS, TARGETS)
    r = m.compute(NAMES)
    assert r["images"] == 4
    assert r["top1"] == pytest.approx(2 / 4)
    assert r["top2"] == pytest.approx(3 / 4)
    assert r["loss"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.5) + math.log(0.1)) / 4)
    assert m.confusion.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    # cat: predicted twice, right once; dog: predicted once, never right; owl: predicted once, right.
    by_class = {c["class"]: c for c in r["per_class"]}
    assert by_class["cat"]["precision"] == pytest.approx(0.5) and by_class["cat"]["recall"] == pytest.approx(1.0)
    assert by_class["dog"]["precision"] == 0.0 and by_class["dog"]["recall"] == 0.0 and by_class["dog"]["f1"] == 0.0
    assert by_class["owl"]["precision"] == pytest.approx(1.0) and by_class["owl"]["recall"] == pytest.approx(0.5)
    assert by_class["cat"]["f1"] == pytest.approx(2 / 3) and by_class["owl"]["f1"] == pytest.approx(2 / 3)
    assert [c["support"] for c in r["per_class"]] == [1, 1, 2]
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)


def test_metrics_stream_over_batches():
    whole, parts = ClassificationMetrics(3), ClassificationMetrics(3)
    whole.update(PROBS, TARGETS)
    parts.update(PROBS[:1], TARGETS[:1])
    parts.update(PROBS[1:], TARGETS[1:])
    assert torch.equal(whole.confusion, parts.confusion)
    for key in ("top1", "top3", "loss", "macro_f1"):
        assert whole.compute(NAMES)[key] == pytest.approx(parts.compute(NAMES)[key])
    # top-5 of 3 classes is top-3: always right.
    assert whole.compute(NAMES)["top3"] == 1.0


def test_confusion_csv(tmp_path):
    m = ClassificationMetrics(3)
    m.update(PROBS, TARGETS)
    path = write_confusion_csv(m.confusion, NAMES, tmp_path / "c.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "true\\predicted,cat,dog,owl"
    assert lines[3] == "owl,0,1,1"


class FixedLogits(torch.nn.Module):
    """Returns the same logits whatever the input (one row per image of the batch)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.logits[: len(x)]


def member(logits, names=NAMES, offset=0, source="m.pt"):
    return Member(source, FixedLogits(logits), Preprocess(label_offset=offset), list(names))


def test_ensemble_averages_softmax_over_models():
    a = [[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]]
    b = [[0.0, 0.0, 4.0], [1.0, 1.0, 1.0]]
    probs_a = member(a).logits_to_probs(torch.tensor(a))
    probs_b = member(b).logits_to_probs(torch.tensor(b))
    averaged = average_probabilities([probs_a, probs_b])
    e = math.exp
    first = [(e(2) / (e(2) + 2) + 1 / (2 + e(4))) / 2, (1 / (e(2) + 2) + 1 / (2 + e(4))) / 2,
             (1 / (e(2) + 2) + e(4) / (2 + e(4))) / 2]
    assert averaged[0].tolist() == pytest.approx(first)
    assert averaged[1].tolist() == pytest.approx(
        [(1 / (1 + e(1) + e(3)) + 1 / 3) / 2, (e(1) / (1 + e(1) + e(3)) + 1 / 3) / 2,
         (e(3) / (1 + e(1) + e(3)) + 1 / 3) / 2])
    assert averaged.sum(1).tolist() == pytest.approx([1.0, 1.0])
    # Softmax is averaged, not the logits.
    assert not torch.allclose(averaged, (torch.tensor(a) + torch.tensor(b)).div(2).softmax(1), atol=1e-2)


def test_crop_probabilities_average_softmax_over_crops_in_chunks():
    logits = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]]
    m = member(logits)
    crops = torch.zeros(2, 2, 3, 4, 4)  # two images of two crops; the model ignores pixels

    class Chunked(FixedLogits):
        # Serves the fixed rows in order across calls, so chunking must keep the crop order.
        def forward(self, x):
            start = self.calls
            self.calls += len(x)
            return self.logits[start:start + len(x)]

    chunked = Chunked(logits)
    chunked.calls = 0
    m.model = chunked
    probs = m.crop_probabilities(crops, max_batch=3)
    soft = torch.tensor(logits).softmax(1)
    assert torch.allclose(probs, torch.stack([soft[:2].mean(0), soft[2:].mean(0)]))


def test_label_offset_drops_background_class():
    m = member([[5.0, 1.0, 2.0, 3.0]], offset=1)
    probs = m.logits_to_probs(torch.tensor([[5.0, 1.0, 2.0, 3.0]]))
    assert torch.allclose(probs, torch.tensor([[1.0, 2.0, 3.0]]).softmax(1))


def test_ensemble_with_different_classes_is_one_clear_error():
    with pytest.raises(ConfigError, match="b.pt predicts 3 classes .* do not match"):
        check_same_classes([member([[0.0] * 3]), member([[0.0] * 3], names=["cat", "owl", "dog"], source="b.pt")])
    assert check_same_classes([member([[0.0] * 3]), member([[1.0] * 3])]) == NAMES
