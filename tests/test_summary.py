"""summarize(), paper_table() and `inceptionnet summary`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inceptionnet import ConfigError, create_model, list_models
from inceptionnet.analysis.summary import layer_macs, paper_table, summarize
from inceptionnet.cli import main


class _Tiny(nn.Module):
    """conv 3->4 3x3 (pad 1), BN, ReLU, the same conv called twice, global pool, linear 4->2."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU())
        self.again = nn.Conv2d(4, 4, 1, groups=2, bias=False)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.again(self.again(self.body(self.conv(x))))
        return self.fc(x.mean((2, 3)))


def test_summarize_counts_multiply_adds_once_per_call():
    model = _Tiny()
    model.fc.weight.requires_grad_(False)
    s = summarize(model, (5, 6))
    conv = 4 * 5 * 6 * 3 * 3 * 3
    grouped = 4 * 5 * 6 * (4 // 2) * 1
    assert s.macs == conv + 2 * grouped + 4 * 2
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert s.trainable_params == s.total_params - 8
    assert [r.name for r in s.visible_rows()] == ["conv", "body.0", "body.1", "again", "again", "fc"]
    assert [r.name for r in s.visible_rows(depth=1)] == ["conv", "body", "again", "again", "fc"]
    body = next(r for r in s.rows if r.name == "body")
    assert body.output_shape == (4, 5, 6) and body.params == 8 and not body.leaf
    assert model.training  # the mode is restored


def test_layer_macs_of_other_modules_is_zero():
    assert layer_macs(nn.ReLU(), torch.zeros(1, 3, 4, 4)) == 0


def test_container_macs_are_the_sum_of_their_layers():
    s = summarize(create_model("resnet18_cifar", num_classes=10), 32)
    layer1 = next(r for r in s.rows if r.name == "layer1")
    assert layer1.macs == sum(r.macs for r in s.rows if r.leaf and r.name.startswith("layer1."))
    assert sum(r.macs for r in s.visible_rows(depth=1)) == s.macs


def test_summary_runs_with_aux_heads():
    model = create_model("googlenet", aux_logits=True)
    without = summarize(model, 96)
    with_aux = summarize(model, 96, with_aux=True)
    aux_macs = sum(r.macs for r in with_aux.rows if r.leaf and r.name.startswith("aux"))
    assert aux_macs > 0 and with_aux.macs == without.macs + aux_macs
    assert not any(r.name.startswith("aux") for r in without.rows)


def test_paper_table_refuses_other_models():
    with pytest.raises(ConfigError, match="not a GoogLeNet"):
        paper_table(create_model("resnet18_cifar"))


def test_paper_table_notes_where_torchvision_departs_from_the_paper():
    table = paper_table(create_model("googlenet_tv", aux_logits=False))
    assert any("3x3 kernels" in n for n in table.notes)
    assert next(r for r in table.rows if r.name == "maxpool4").patch == "2x2/2"
    assert table.rows[-1].output == (1000, 1, 1)


def test_cli_summary_prints_every_layer_and_totals(capsys):
    assert main(["summary", "inception_cifar", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    model = create_model("inception_cifar", num_classes=10)
    assert f"params: {sum(p.numel() for p in model.parameters()):,}" in out
    assert "blocks.3.branch4.1.conv" in out and "multiply-adds:" in out


def test_cli_summary_depth_paper_and_aux(capsys):
    assert main(["summary", "googlenet", "--paper"]) == 0
    out = capsys.readouterr().out
    assert "inception4e" in out and "14x14x832" in out and "#5x5 reduce" in out
    assert main(["summary", "googlenet", "--aux", "--depth", "1", "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "aux1" in out and "inception3a.branch1" not in out


@pytest.mark.parametrize("argv, message", [
    (["summary", "no_such_model"], "unknown model 'no_such_model'"),
    (["summary", "googlenet", "--input-size", "16"], "at least 32x32"),
    (["summary", "resnet18", "--paper"], "not a GoogLeNet"),
    (["summary", "resnet18", "--aux"], "no auxiliary heads"),
    (["summary", "resnet18", "--depth", "0"], "--depth must be at least 1"),
])
def test_cli_summary_errors_are_one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_summary_works_for_every_registered_model():
    for name in list_models():
        model = create_model(name, num_classes=10)
        s = summarize(model, model.min_input_size, in_chans=model.in_chans)
        assert s.macs > 0 and s.total_params == sum(p.numel() for p in model.parameters()), name
