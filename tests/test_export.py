"""Export to ONNX, TorchScript and safetensors: parity with eager PyTorch for every registered model."""

import json

import onnx
import pytest
import torch
from torch import nn

import inceptionnet
from inceptionnet import create_model, fast, get_spec, list_models, runtime
from inceptionnet.artifacts import load_model
from inceptionnet.cli import main
from inceptionnet.engine.checkpoint import load_checkpoint, save_checkpoint
from inceptionnet.export import ExportError, export

CLASSES = ["a", "b", "c", "d", "e"]


def make_checkpoint(path, name, num_classes=5):
    """A checkpoint of `name` with random weights, aux heads included when the model has them, and BN
    statistics moved off their defaults so that eval-mode BN is not an identity."""
    spec = get_spec(name)
    kwargs = {"num_classes": num_classes, "aux_logits": bool(spec.aux_heads)}
    model = create_model(name, **kwargs)
    generator = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=generator) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
    save_checkpoint(path, {"model_name": name, "model_kwargs": kwargs, "class_names": CLASSES[:num_classes],
                           "preprocess": spec.preprocess.to_dict(), "model": model.state_dict(), "ema": None})
    return path


def export_input_size(name):
    # The smallest input the model accepts, but never below 32 so that every pooling stage sees an odd remainder.
    return max(get_spec(name).min_input_size, 32)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])  # safetensors holds weights only: checked below
@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_with_parity(tmp_path, name, fmt):
    ckpt = make_checkpoint(tmp_path / "m.pt", name)
    size = export_input_size(name)
    model = load_model(ckpt).model
    with torch.no_grad():
        scale = float(model(torch.randn(2, 3, size, size)).abs().max())
    # Random deep networks reach logits near 1e3 (inception_v4), where float32 rounding alone passes 1e-4:
    # the default check is relative to the logit scale (1e-4 in fp32), still far below what a changed pooling
    # would cause. TorchScript's `auto` may write bf16 on a CPU with native bf16: its own tolerance applies.
    result = export(ckpt, fmt, tmp_path / f"m.{fmt}", input_size=size)
    assert result["precision"] == "fp32" or (fmt == "torchscript" and runtime.native_bf16())
    assert result["max_abs_diff"] <= 1.01 * runtime.LOGIT_TOLERANCE[result["precision"]] * max(1.0, scale)
    assert (tmp_path / f"m.{fmt}").is_file()
    # Checked on a batch of 3 after exporting with 2: the batch dimension is dynamic.
    assert result["check_shape"][0] == 3


def test_exported_files_carry_what_deployment_needs(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", "inception_cifar")
    export(ckpt, "onnx", tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model_name"] == "inception_cifar" and json.loads(meta["class_names"]) == CLASSES
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic batch size
    assert [o.name for o in proto.graph.output] == ["logits"]  # no aux outputs

    export(ckpt, "safetensors", tmp_path / "m.safetensors")
    model = load_model(tmp_path / "m.safetensors").model
    assert not any(k.startswith("aux") for k in model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    eager = load_model(ckpt).model
    with torch.no_grad():
        assert torch.allclose(model(x), eager(x), atol=1e-5)


@pytest.mark.slow
def test_dynamo_onnx_export(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", "inception_cifar")
    result = export(ckpt, "onnx", tmp_path / "m.onnx", dynamo=True)
    assert result["max_abs_diff"] <= 1e-4


def _conv_nodes(path):
    return sum(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


def test_default_export_is_the_fused_graph(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "m.pt", "inception_cifar")
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "fused.onnx")]) == 0
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "plain.onnx"), "--no-optimize"]) == 0
    assert capsys.readouterr().out.count("max |diff| vs PyTorch") == 2  # both passed the parity check
    # BN is folded either way (the ONNX exporter folds it too); the sibling 1x1 convolutions are merged only here.
    assert 0 < _conv_nodes(tmp_path / "fused.onnx") < _conv_nodes(tmp_path / "plain.onnx")


class _Shifted(nn.Module):
    """A wrong "fused" graph: the model's logits plus 1e-3."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) + 1e-3


def test_parity_check_compares_with_the_plain_model(tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "m.pt", "inception_cifar")
    monkeypatch.setattr(fast, "optimize", lambda model, **kwargs: _Shifted(model))
    with pytest.raises(ExportError, match="differs from PyTorch by 0.001"):
        export(ckpt, "torchscript", tmp_path / "m.ts", precision="fp32")
    assert export(ckpt, "torchscript", tmp_path / "m.ts", optimize=False)["optimized"] is False
    assert export(ckpt, "safetensors", tmp_path / "m.safetensors")["optimized"] is False  # weights: never fused


def test_parity_failure_exits_2_and_leaves_no_file(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "m.pt", "inception_cifar")
    out = tmp_path / "m.pt2"
    # A negative tolerance cannot be met, even by identical outputs.
    code = main(["export", str(ckpt), "--format", "torchscript", "--out", str(out), "--atol", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "differs from PyTorch" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".m.pt2*"))
    with pytest.raises(ExportError):
        export(ckpt, "safetensors", out, atol=-1)


def test_cli_export_and_errors(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "m.pt", "inception_cifar")
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert "max |diff|" in capsys.readouterr().out
    assert main(["export", str(ckpt), "--format", "tflite", "--out", str(tmp_path / "m.x")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["export", str(tmp_path / "missing.pt"), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "missing.pt" in err and "not found" in err


def test_python_api_is_callable_as_documented(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", "inception_cifar")
    result = inceptionnet.export(ckpt, "torchscript", tmp_path / "m.ts")
    loaded = torch.jit.load(str(tmp_path / "m.ts"))
    assert loaded(torch.randn(1, 3, 32, 32)).shape == (1, len(CLASSES))
    assert result["path"] == str(tmp_path / "m.ts")


def test_the_tolerance_scales_with_the_logits(tmp_path, monkeypatch):
    path = make_checkpoint(tmp_path / "m.pt", "inception_cifar")
    ckpt = load_checkpoint(path)
    classifier = [k for k, v in ckpt["model"].items() if v.dim() == 2][-1]
    ckpt["model"][classifier] = ckpt["model"][classifier] * 1e4  # logits in the thousands
    path = save_checkpoint(tmp_path / "large.pt", ckpt)
    monkeypatch.setattr(fast, "optimize", lambda model, **kwargs: _Shifted(model))
    result = export(path, "torchscript", tmp_path / "m.ts")  # off by 1e-3, allowed 1e-4 x |logits| > 0.1
    assert 0.9e-3 < result["max_abs_diff"] < 1.1e-3
