"""`inceptionnet predict`: JSON output on a folder with a corrupt file, top-k, Grad-CAM overlays, errors."""

import importlib
import json

import pytest
import torch
from PIL import Image

import inceptionnet
from inceptionnet import create_model, get_spec
from inceptionnet.cli import main
from inceptionnet.engine.checkpoint import save_checkpoint
from peer_parity import randomize_bn

predict_module = importlib.import_module("inceptionnet.predict")

CLASSES = ["circle", "square", "star", "moon"]


@pytest.fixture
def checkpoint(tmp_path):
    spec = get_spec("inception_cifar")
    model = randomize_bn(create_model("inception_cifar", num_classes=len(CLASSES)))  # BN folding changes weights
    return save_checkpoint(tmp_path / "m.pt", {
        "model_name": "inception_cifar", "model_kwargs": {"num_classes": len(CLASSES)}, "class_names": CLASSES,
        "preprocess": spec.preprocess.to_dict(), "model": model.state_dict(), "ema": None})


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("RGB", (50, 40), (200, 30, 30)).save(root / "a" / "one.jpg")
    Image.new("L", (30, 45), 90).save(root / "b" / "one.png")  # same stem in another folder
    Image.new("RGB", (64, 64), (10, 200, 90)).save(root / "top.png")
    (root / "b" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "notes.txt").write_text("not an image")  # ignored: not an image extension
    return root


def test_json_on_a_folder_with_a_corrupt_file(checkpoint, folder, capsys):
    assert main(["predict", str(checkpoint), str(folder), "--json", "--topk", "3"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    by_name = {r["path"].split("photos/")[1]: r for r in results}
    assert sorted(by_name) == ["a/one.jpg", "b/corrupt.jpg", "b/one.png", "top.png"]
    assert "error" in by_name["b/corrupt.jpg"] and "predictions" not in by_name["b/corrupt.jpg"]
    assert "b/corrupt.jpg" in captured.err and "one.png" not in captured.err
    for name in ("a/one.jpg", "b/one.png", "top.png"):
        preds = by_name[name]["predictions"]
        assert len(preds) == 3 and {p["class"] for p in preds} <= set(CLASSES)
        probs = [p["probability"] for p in preds]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_probabilities_are_the_models_softmax(checkpoint, folder):
    from inceptionnet.artifacts import load_model
    from inceptionnet.data.images import load_image
    from inceptionnet.data.transforms import build_eval_transform

    (result,) = inceptionnet.predict(checkpoint, folder / "top.png", topk=len(CLASSES))
    loaded = load_model(checkpoint)
    names = loaded.class_names
    with torch.no_grad():
        image = build_eval_transform(loaded.preprocess)(load_image(folder / "top.png"))
        probs = loaded.model(image[None]).softmax(1)[0]
    got = {p["class"]: p["probability"] for p in result["predictions"]}
    assert got == pytest.approx({n: float(p) for n, p in zip(names, probs, strict=True)}, abs=1e-6)


def test_optimized_and_plain_predictions_agree(checkpoint, folder, optimize_calls, capsys):
    fused = inceptionnet.predict(checkpoint, folder, topk=len(CLASSES), optimize=True, precision="fp32")
    assert optimize_calls == [(1, 3, 32, 32)]
    assert main(["predict", str(checkpoint), str(folder), "--topk", str(len(CLASSES)), "--json",
                 "--no-optimize"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert len(optimize_calls) == 1
    assert [r["path"] for r in fused] == [r["path"] for r in plain]
    for f, p in zip(fused, plain, strict=True):
        if "error" in p:
            assert f["error"] == p["error"]
            continue
        assert [x["class"] for x in f["predictions"]] == [x["class"] for x in p["predictions"]]
        assert [x["probability"] for x in f["predictions"]] == pytest.approx(
            [x["probability"] for x in p["predictions"]], abs=1e-4)


def test_the_fused_graph_is_built_by_default_from_enough_images(checkpoint, folder, optimize_calls, monkeypatch):
    inceptionnet.predict(checkpoint, folder)
    assert optimize_calls == [], "three images do not pay for building the graph"
    monkeypatch.setattr(predict_module, "OPTIMIZE_MIN_IMAGES", 3)
    inceptionnet.predict(checkpoint, folder)
    # `auto` builds the fp32 graph, and the bf16 one too where the CPU has native bf16
    assert optimize_calls[:1] == [(1, 3, 32, 32)] and set(optimize_calls) == {(1, 3, 32, 32)}


def test_cam_overlays_one_png_per_image(checkpoint, folder, tmp_path, capsys, optimize_calls):
    cams = tmp_path / "cams"
    assert main(["predict", str(checkpoint), str(folder), "--cam", str(cams), "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("photos/") == 3  # one line per readable image
    written = sorted(p.name for p in cams.iterdir())
    assert written == ["a__one.cam.png", "b__one.cam.png", "top.cam.png"]
    with Image.open(cams / "top.cam.png") as im:
        assert im.format == "PNG" and im.size == (32, 32)
    assert optimize_calls == []  # Grad-CAM hooks and differentiates the plain model


def test_missing_input_exits_2(checkpoint, tmp_path, capsys):
    assert main(["predict", str(checkpoint), str(tmp_path / "nope.jpg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.jpg" in err[0]
    assert main(["predict", str(tmp_path / "none.pt"), str(tmp_path)]) == 2
