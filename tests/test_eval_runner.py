"""`inceptionnet eval` end to end: report files, metrics against a hand computation, ensembles, error paths,
and 144-crop evaluation of a briefly trained model."""

import csv
import json
import math

import pytest
import torch
from PIL import Image
from torch import nn

import inceptionnet
from image_folders import make_image_folder
from inceptionnet import Preprocess, create_model, fast, get_spec
from inceptionnet.cli import main
from inceptionnet.data.datasets import build_datasets
from inceptionnet.data.folder import ImageDataset, scan_image_folder
from inceptionnet.data.synthetic import ensure_synthetic_dataset
from inceptionnet.data.transforms import build_eval_transform
from inceptionnet.engine.checkpoint import save_checkpoint
from inceptionnet.evaluate.ensemble import load_members
from inceptionnet.evaluate.runner import PerMemberTransform, iter_probabilities
from inceptionnet.evaluate.tta import MultiCropTransform
from inceptionnet.runtime import resolve_device
from peer_parity import randomize_bn

NAMES = ["cat", "dog", "owl"]
# Pixel-space colours of the test images and the logits the colour model gives them.
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
LOGITS = {"red": [3.0, 1.0, 0.0], "green": [0.0, 2.0, 1.0], "blue": [0.0, 1.0, 1.5]}
# Class folder -> image colours. Right: cat red, red; dog green; owl blue, blue. Wrong: cat green -> dog,
# dog blue -> owl, owl red -> cat.
FOLDERS = {"cat": ["red", "red", "green"], "dog": ["green", "blue"], "owl": ["blue", "blue", "red"]}
PRE = Preprocess(input_size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=1.0)


class ColourModel(nn.Module):
    """Logits = the image's mean colour (in [0, 1]) times a fixed matrix: red/green/blue give LOGITS rows."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.register_buffer("matrix", torch.tensor([LOGITS["red"], LOGITS["green"], LOGITS["blue"]]) * scale)
        self.weight = nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, x):
        return x.mean(dim=(2, 3)) @ self.matrix


@pytest.fixture
def colour_folder(tmp_path):
    root = tmp_path / "data"
    for name, colours in FOLDERS.items():
        (root / name).mkdir(parents=True)
        for i, colour in enumerate(colours):
            Image.new("RGB", (24, 18), COLOURS[colour]).save(root / name / f"{i}.png")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture
def colour_checkpoints(tmp_path, monkeypatch):
    """Two checkpoint files whose models are ColourModels (scale 1 and 2, different input sizes)."""
    paths = []
    for i, pre in ((1, PRE), (2, Preprocess(**{**PRE.to_dict(), "input_size": 12}))):
        path = tmp_path / f"colour{i}.pt"
        save_checkpoint(path, {"model_name": "inception_cifar", "model_kwargs": {"num_classes": 3},
                               "class_names": NAMES, "preprocess": pre.to_dict(), "model": {}, "ema": None})
        paths.append(path)

    def fake_build_model(meta, state_dict, origin):
        return ColourModel(2.0 if origin.endswith("colour2.pt") else 1.0).eval()

    monkeypatch.setattr("inceptionnet.artifacts.build_model", fake_build_model)
    return paths


def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("tta", ["center", "10crop"])
def test_cli_report_matches_hand_computation(colour_folder, colour_checkpoints, tmp_path, capsys, tta):
    out = tmp_path / "out"
    code = main(["eval", str(colour_checkpoints[0]), "--data", str(colour_folder), "--out", str(out), "--tta", tta,
                 "--batch-size", "7"])
    assert code == 0
    assert "top1 0.6250" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 8 and report["tta"] == tta
    assert report["top1"] == pytest.approx(5 / 8)
    assert report["top3"] == 1.0
    expected_loss = -sum(math.log(softmax(LOGITS[colour])[NAMES.index(name)])
                         for name, colours in FOLDERS.items() for colour in colours) / 8
    assert report["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert report["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    cat, dog, owl = report["per_class"]
    assert (cat["precision"], cat["recall"]) == pytest.approx((2 / 3, 2 / 3))
    assert (dog["precision"], dog["recall"], dog["f1"]) == pytest.approx((1 / 2, 1 / 2, 1 / 2))
    assert (owl["precision"], owl["recall"], owl["support"]) == pytest.approx((2 / 3, 2 / 3, 3))
    assert [s["path"].endswith("broken.jpg") for s in report["skipped"]] == [True]
    rows = list(csv.reader((out / "confusion.csv").open()))
    assert rows[0] == ["true\\predicted", *NAMES] and rows[2] == ["dog", "0", "1", "1"]
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_ensemble_averages_the_models_softmax(colour_folder, colour_checkpoints):
    single = inceptionnet.evaluate(colour_checkpoints[1], data=colour_folder)
    both = inceptionnet.evaluate(colour_checkpoints[0], data=colour_folder, ensemble=[colour_checkpoints[1]])
    assert both["checkpoints"] == [str(p) for p in colour_checkpoints]
    expected_loss = -sum(math.log((softmax(LOGITS[c])[NAMES.index(n)]
                                   + softmax([2 * v for v in LOGITS[c]])[NAMES.index(n)]) / 2)
                         for n, colours in FOLDERS.items() for c in colours) / 8
    assert both["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert both["loss"] != pytest.approx(single["loss"])


def test_ensemble_of_different_classes_exits_2(colour_folder, colour_checkpoints, tmp_path, capsys):
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"model_name": "inception_cifar", "model_kwargs": {"num_classes": 3},
                            "class_names": ["ant", "bee", "cow"], "preprocess": PRE.to_dict(), "model": {},
                            "ema": None})
    code = main(["eval", str(colour_checkpoints[0]), "--data", str(colour_folder), "--ensemble", str(other),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "do not match" in err[0]


def test_error_paths_exit_2_with_one_line(colour_folder, colour_checkpoints, tmp_path, capsys):
    cases = [
        (["eval", str(tmp_path / "missing.pt"), "--data", str(colour_folder)], "model file not found"),
        (["eval", str(colour_checkpoints[0]), "--data", str(colour_folder), "--tta", "12crop"], "--tta"),
        (["eval", str(colour_checkpoints[0]), "--data", str(tmp_path / "nowhere")], "nowhere"),
        (["eval", str(colour_checkpoints[0]), "--data", str(colour_folder), "--split", "most"], "--split"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


def test_data_classes_unknown_to_the_checkpoint(colour_folder, colour_checkpoints, tmp_path):
    (colour_folder / "yak").mkdir()
    Image.new("RGB", (20, 20), (9, 9, 9)).save(colour_folder / "yak" / "0.png")
    with pytest.raises(inceptionnet.DataError, match="yak"):
        inceptionnet.evaluate(colour_checkpoints[0], data=colour_folder)


def train_briefly(model, dataset, steps):
    """A few SGD steps over (image, label) items."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    done = 0
    while done < steps:
        for images, labels in loader:
            loss = nn.functional.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return model.eval()


@pytest.mark.slow
def test_144_crop_evaluation_of_a_trained_model(tmp_path):
    # inception_cifar at 16 px: a real Inception network, cheap enough to train for a few steps on 2 cores.
    pre = Preprocess(**{**get_spec("inception_cifar").preprocess.to_dict(), "input_size": 16})
    tta = MultiCropTransform("144crop", pre)
    sets = build_datasets(str(ensure_synthetic_dataset()), 0.2, 0, build_eval_transform(pre),
                          PerMemberTransform([tta]))
    classes = len(sets.class_names)
    model = train_briefly(create_model("inception_cifar", num_classes=classes), sets.train, 30)
    ckpt = save_checkpoint(tmp_path / "m.pt", {
        "model_name": "inception_cifar", "model_kwargs": {"num_classes": classes}, "class_names": sets.class_names,
        "preprocess": pre.to_dict(), "model": model.state_dict(), "ema": None})
    members = load_members([ckpt], resolve_device("cpu"))
    subset = ImageDataset(sets.val.samples[::len(sets.val) // 12], sets.val.transform)
    rows = []
    for probs, targets, _ in iter_probabilities(members, subset, "144crop", batch_size=100):
        assert probs.shape == (len(targets), classes)
        assert (probs >= 0).all() and torch.allclose(probs.sum(1), torch.ones(len(targets)))
        rows.append(probs)
    probs = torch.cat(rows)
    assert len(probs) == len(subset)
    # Each row is the mean of the 144 crops' softmax, crop by crop.
    (crops,), _ = subset[0]
    with torch.no_grad():
        by_hand = members[0].model(crops).softmax(1).mean(0)
    assert crops.shape == (144, 3, 16, 16)
    assert torch.allclose(probs[0], by_hand, atol=1e-5)


def random_checkpoint(path, class_names, input_size):
    """An inception_cifar checkpoint at `input_size` px with random weights and BN statistics (so that
    folding BN into the convolutions changes the weights)."""
    model = randomize_bn(create_model("inception_cifar", num_classes=len(class_names)))
    pre = Preprocess(**{**get_spec("inception_cifar").preprocess.to_dict(), "input_size": input_size})
    return save_checkpoint(path, {"model_name": "inception_cifar", "model_kwargs": {"num_classes": len(class_names)},
                                  "class_names": class_names, "preprocess": pre.to_dict(),
                                  "model": model.state_dict(), "ema": None})


@pytest.fixture
def random_ensemble(tmp_path):
    """An image folder and two random checkpoints of its classes, at 32 and 24 px."""
    data = make_image_folder(tmp_path / "data", per_class=2)
    names = sorted(p.name for p in data.iterdir())
    return data, [random_checkpoint(tmp_path / "a.pt", names, 32), random_checkpoint(tmp_path / "b.pt", names, 24)]


@pytest.mark.slow  # tracing and freezing the fused graphs: a few seconds per model on 2 cores
def test_optimized_and_plain_ensembles_agree_image_by_image(random_ensemble):
    data, ckpts = random_ensemble
    probs = {}
    for optimize in (True, False):
        members = load_members(ckpts, resolve_device("cpu"), optimize=optimize)
        transform = PerMemberTransform([MultiCropTransform("10crop", m.preprocess) for m in members])
        dataset = ImageDataset(scan_image_folder(data).samples, transform)
        probs[optimize] = torch.cat([p for p, _, _ in iter_probabilities(members, dataset, "10crop", batch_size=7)])
    assert probs[True].shape == (6, 3)
    assert torch.equal(probs[True].argmax(1), probs[False].argmax(1))  # the same top-1 for every image
    assert (probs[True] - probs[False]).abs().max() <= 1e-4


def test_eval_runs_the_optimized_model_traced_at_the_checkpoint_size(random_ensemble, tmp_path, optimize_calls):
    data, ckpts = random_ensemble
    traced_at = optimize_calls
    (member,) = load_members(ckpts[1:], resolve_device("cpu"))
    assert isinstance(member.model, fast.OptimizedModel) and member.device == torch.device("cpu")
    assert traced_at == [(1, 3, 24, 24)]  # the checkpoint's own input size, not the model's default
    assert main(["eval", str(ckpts[0]), "--data", str(data), "--out", str(tmp_path / "fused"), "--quiet"]) == 0
    # `auto` builds the fp32 graph, and the bf16 one too where the CPU has native bf16: each at 32 px.
    assert traced_at[1:2] == [(1, 3, 32, 32)] and set(traced_at[1:]) == {(1, 3, 32, 32)}
    traced = len(traced_at)
    assert main(["eval", str(ckpts[0]), "--data", str(data), "--out", str(tmp_path / "plain"), "--quiet",
                 "--no-optimize"]) == 0
    assert len(traced_at) == traced
    assert json.loads((tmp_path / "plain" / "report.json").read_text())["optimized"] is False


def test_a_train_and_test_folder_is_evaluated_on_its_test_split(tmp_path):
    from inceptionnet.evaluate.runner import load_eval_data

    make_image_folder(tmp_path / "data" / "train", per_class=3)
    make_image_folder(tmp_path / "data" / "test", per_class=2)
    data = load_eval_data(tmp_path / "data", build_eval_transform(PRE))
    assert len(data.dataset) == 2 * len(data.class_names) and "train" not in data.class_names
    assert all("/test/" in path for path, _ in data.dataset.samples)
