"""ONNX files as models: metadata written and read back, eval and predict through onnxruntime, and
static int8 quantization (QDQ, per-channel weights) calibrated on an image folder."""

import json

import onnx
import pytest
import torch
from onnx import numpy_helper

from deploy_models import CLASSES, make_checkpoint
from image_folders import make_image_folder
from inceptionnet.artifacts import OnnxModel, read_onnx_metadata
from inceptionnet.cli import main
from inceptionnet.deploy.quantize import FolderCalibration, quantize
from inceptionnet.errors import WeightsError
from inceptionnet.evaluate.runner import evaluate
from inceptionnet.export import export
from inceptionnet.models.registry import Preprocess
from inceptionnet.predict import predict


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(checkpoint, its fp32 ONNX export, an image folder of the checkpoint's classes)."""
    root = tmp_path_factory.mktemp("onnx")
    ckpt = make_checkpoint(root / "m.pt")
    export(ckpt, "onnx", root / "m.onnx")
    return ckpt, root / "m.onnx", make_image_folder(root / "images", classes=3, per_class=8, size=40)


@pytest.fixture(scope="module")
def int8(models, tmp_path_factory):
    ckpt, _, folder = models
    out = tmp_path_factory.mktemp("int8") / "m.int8.onnx"
    return quantize(ckpt, folder, out, num_images=20)


def test_metadata_round_trip(models):
    ckpt, onnx_path, _ = models
    meta = read_onnx_metadata(onnx_path)
    saved = torch.load(ckpt, weights_only=True)
    assert meta["class_names"] == CLASSES and meta["precision"] == "fp32"
    assert Preprocess.from_dict(meta["preprocess"]) == Preprocess.from_dict(saved["preprocess"])
    assert meta["model_name"] == "inception_cifar"


def test_eval_of_the_onnx_file_matches_the_checkpoint(models, tmp_path):
    ckpt, onnx_path, folder = models
    torch_report = evaluate(ckpt, data=folder, optimize=False)
    onnx_report = evaluate(onnx_path, data=folder, out=tmp_path / "report")
    assert onnx_report["top1"] == torch_report["top1"] and onnx_report["images"] == 24
    assert onnx_report["loss"] == pytest.approx(torch_report["loss"], abs=1e-4)
    assert [p["name"] for p in onnx_report["precision"]] == ["fp32"]
    assert json.loads((tmp_path / "report" / "report.json").read_text())["checkpoints"] == [str(onnx_path)]


def test_predict_on_the_onnx_file_matches_the_checkpoint(models):
    ckpt, onnx_path, folder = models
    expected, got = predict(ckpt, folder, topk=3, optimize=False), predict(onnx_path, folder, topk=3)
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    for e, g in zip(expected, got, strict=True):
        assert [p["class"] for p in g["predictions"]] == [p["class"] for p in e["predictions"]]
        for pe, pg in zip(e["predictions"], g["predictions"], strict=True):
            assert pg["probability"] == pytest.approx(pe["probability"], abs=1e-4)


def test_cam_and_foreign_onnx_files_are_user_errors(models, tmp_path, capsys):
    _, onnx_path, folder = models
    assert main(["predict", str(onnx_path), str(folder), "--cam", str(tmp_path / "cams")]) == 2
    assert "Grad-CAM" in capsys.readouterr().err and not (tmp_path / "cams").exists()
    foreign = onnx.load(str(onnx_path))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(WeightsError, match="not written by inceptionnet"):
        OnnxModel(tmp_path / "foreign.onnx")
    assert main(["eval", str(tmp_path / "foreign.onnx"), "--data", str(folder)]) == 2


def test_int8_model_is_qdq_per_channel_with_the_metadata(int8, models):
    proto = onnx.load(int8["path"])
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "Conv" in ops
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8_weights, "no int8 convolution weights"
    per_channel = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[0] in {t.name for t in int8_weights}]
    scales = {t.name: t for t in proto.graph.initializer}
    assert all(len(scales[n.input[1]].dims) == 1 and scales[n.input[1]].dims[0] > 1 for n in per_channel)
    meta = read_onnx_metadata(int8["path"])
    assert meta["precision"] == "int8" and meta["class_names"] == CLASSES
    assert int8["calibration_images"] == 20 and int8["skipped"] == []


def test_int8_logits_follow_the_fp32_model_on_calibrated_images(int8, models):
    _, onnx_path, folder = models
    fp32, quantized = OnnxModel(onnx_path), OnnxModel(int8["path"])
    reader = FolderCalibration(sorted(folder.rglob("*.png")), Preprocess.from_dict(fp32.meta["preprocess"]),
                               fp32.input_name, batch_size=24)
    x = torch.from_numpy(reader.get_next()[fp32.input_name])
    expected, got = fp32(x), quantized(x)
    assert got.shape == expected.shape == (24, 3) and got.dtype == torch.float32
    relative = float((got - expected).norm() / expected.norm())
    assert relative < 0.1, relative
    assert int8["agreement"] >= 0.75


def test_quantize_cli_and_its_errors(models, tmp_path, capsys):
    ckpt, onnx_path, folder = models
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(onnx_path), "--calib", str(folder), "--out", str(out), "--num-images", "6"]) == 0
    assert "calibrated on 6 images" in capsys.readouterr().out and read_onnx_metadata(out)["precision"] == "int8"
    every = tmp_path / "every.onnx"
    assert main(["quantize", str(onnx_path), "--calib", str(folder), "--out", str(every), "--num-images", "6",
                 "--full-range", "--quantize-classifier"]) == 0
    assert "8-bit weights" in capsys.readouterr().out
    graph = onnx.load(str(every)).graph
    assert max(int(abs(w.astype(int)).max()) for w in int8_weights(graph)) > 64
    assert classifier_of(graph).input[1] in {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert main(["quantize", str(out), "--calib", str(folder), "--out", str(tmp_path / "again.onnx")]) == 2
    assert "already int8" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["quantize", str(ckpt), "--calib", str(tmp_path / "empty"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert main(["quantize", str(ckpt), "--calib", str(folder), "--out", str(tmp_path / "x.onnx"),
                 "--method", "magic"]) == 2
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "again.onnx").exists()


def int8_weights(graph) -> list:
    """The int8 weight tensors of the Conv/Gemm nodes of a QDQ graph, as numpy arrays."""
    return [numpy_helper.to_array(t) for t in graph.initializer
            if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1]


def classifier_of(graph):
    """The Gemm node whose output, through ops such as Flatten, is the graph's output."""
    producers = {o: n for n in graph.node for o in n.output}
    node = producers[graph.output[0].name]
    while node.op_type != "Gemm":
        node = producers[node.input[0]]
    return node


def test_int8_default_is_7_bit_weights_and_an_fp32_classifier(int8):
    graph = onnx.load(int8["path"]).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    classifier = classifier_of(graph)
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert int8["fp32_nodes"] == [classifier.name] and classifier.input[1] in floats  # an fp32 weight matrix
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(dequantized & set(n.input) for n in convs), "every convolution, the first too, is int8"
    assert max(int(abs(w.astype(int)).max()) for w in int8_weights(graph)) <= 64


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_calibration_with_a_short_last_batch(models, method, tmp_path):
    ckpt, _, _ = models
    folder = make_image_folder(tmp_path / "images", classes=3, per_class=7, size=40)  # 21: not a multiple of 16
    result = quantize(ckpt, folder, tmp_path / "m.int8.onnx", num_images=21, method=method)
    assert result["calibration_images"] == 21 and read_onnx_metadata(result["path"])["precision"] == "int8"
