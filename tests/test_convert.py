"""`inceptionnet convert`: real peer files in, our files out (and back), one-line errors with exit 2."""

import pytest
import timm
import torch
import torchvision

from inceptionnet import create_model, load_weights
from inceptionnet.cli import main
from inceptionnet.weights import read_state_dict
from peer_parity import assert_close
from test_bn_inception import cadene_state_dict


def convert(*argv) -> int:
    return main(["convert", *map(str, argv)])


@pytest.mark.slow
def test_timm_file_with_custom_classes_to_safetensors_and_back(tmp_path, capsys):
    peer = timm.create_model("inception_v4", pretrained=False, num_classes=7).eval()
    torch.save(peer.state_dict(), tmp_path / "timm.pth")
    out = tmp_path / "ours.safetensors"
    assert convert("--from", "timm", "--model", "inception_v4", tmp_path / "timm.pth", out) == 0
    assert "7 classes" in capsys.readouterr().out
    ours = create_model("inception_v4", num_classes=7).eval()
    assert load_weights(ours, out).ok
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        assert_close(ours(x), peer(x))
    assert convert("--to", "timm", "--model", "inception_v4", out, tmp_path / "back.pt") == 0
    back = timm.create_model("inception_v4", pretrained=False, num_classes=7)
    back.load_state_dict(read_state_dict(tmp_path / "back.pt"), strict=True)
    for key, value in peer.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key


def test_torchvision_file_keeps_its_aux_head(tmp_path):
    peer = torchvision.models.inception_v3(weights=None, init_weights=False, aux_logits=True)
    torch.save(peer.state_dict(), tmp_path / "tv.pth")
    assert convert("--from", "torchvision", "--model", "inception_v3", tmp_path / "tv.pth", tmp_path / "ours.pt") == 0
    state = read_state_dict(tmp_path / "ours.pt")
    assert torch.equal(state["AuxLogits.fc.weight"], peer.AuxLogits.fc.weight)
    ours = create_model("inception_v3", aux_logits=True)
    assert load_weights(ours, tmp_path / "ours.pt").ok


def test_cadene_file_to_ours(tmp_path):
    torch.save(cadene_state_dict(), tmp_path / "bn_inception-239d2248.pth")
    assert convert("--from", "cadene", "--model", "bn_inception_caffe", tmp_path / "bn_inception-239d2248.pth",
                   tmp_path / "ours.pt") == 0
    state = read_state_dict(tmp_path / "ours.pt")
    assert torch.equal(state["inception_5b_pool_proj.weight"], cadene_state_dict()["inception_5b_pool_proj.weight"])


@pytest.fixture(scope="module")
def v4_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("convert") / "v4.pth"
    torch.save(create_model("inception_v4", num_classes=3).state_dict(), path)
    return path


@pytest.mark.parametrize("args, message", [
    (["--from", "timm", "--model", "inception_v4", "{good}", "{out}.bin"], "OUT must end in"),
    (["--from", "torchvision", "--model", "inception_v4", "{good}", "{out}.pt"], "--from torchvision"),
    (["--to", "cadene", "--model", "inception_v4", "{good}", "{out}.pt"], "--to cadene"),
    (["--from", "timm", "--model", "inception_v4", "{missing}", "{out}.pt"], "not found"),
    (["--from", "timm", "--model", "inception_resnet_v2", "{good}", "{out}.pt"], "does not fit"),
    (["--from", "timm", "--model", "no_such_model", "{good}", "{out}.pt"], "unknown model"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, v4_file, args, message):
    paths = {"good": v4_file, "missing": tmp_path / "nope.pth", "out": tmp_path / "out"}
    assert convert(*[a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("out*"))
