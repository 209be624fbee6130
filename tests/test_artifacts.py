"""Model files (`inceptionnet.artifacts`): the same metadata in .pt and .safetensors, eval and predict on every file
export and convert write, and files that are no model files refused in one line, without running their code."""

import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from deploy_models import make_checkpoint
from image_folders import make_image_folder
from inceptionnet import WeightsError, create_model, get_spec, save_weights
from inceptionnet.artifacts import load_model, read_metadata, save_model
from inceptionnet.artifacts.format import EXPECTED
from inceptionnet.cli import main
from inceptionnet.errors import NotAModelFileError

CLASSES = ["0", "1", "2"]  # the names `convert` gives a 3-class model, so that eval finds them in the folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An image folder with classes 0-2, a checkpoint of confident random answers, and the .safetensors that
    `export` and `convert` (from the checkpoint's plain state_dict) write of it."""
    root = tmp_path_factory.mktemp("artifacts")
    folder = make_image_folder(root / "images", classes=3, per_class=4)
    for c in range(3):
        (folder / f"class{c}").rename(folder / str(c))
    ckpt = make_checkpoint(root / "m.pt", classes=tuple(CLASSES), logit_scale=20.0)
    assert main(["export", str(ckpt), "--format", "safetensors", "--out", str(root / "exported.safetensors")]) == 0
    torch.save(torch.load(ckpt, weights_only=True)["model"], root / "plain.pth")
    assert main(["convert", str(root / "plain.pth"), str(root / "converted.safetensors"),
                 "--model", "inception_cifar"]) == 0
    return folder, {"pt": ckpt, "exported": root / "exported.safetensors", "converted": root / "converted.safetensors"}


def predictions(capsys, path, folder) -> list:
    assert main(["predict", str(path), str(folder), "--json", "--topk", "3", "--no-optimize"]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_gives_the_same_answers_on_every_written_file(files, capsys):
    folder, paths = files
    expected = predictions(capsys, paths["pt"], folder)
    assert len(expected) == 12
    for kind in ("exported", "converted"):
        got = predictions(capsys, paths[kind], folder)
        assert [r["path"] for r in got] == [r["path"] for r in expected]
        for e, g in zip(expected, got, strict=True):
            assert [p["class"] for p in g["predictions"]] == [p["class"] for p in e["predictions"]], kind
            assert [p["probability"] for p in g["predictions"]] == pytest.approx(
                [p["probability"] for p in e["predictions"]], abs=1e-5)


def test_eval_gives_the_same_report_on_every_written_file(files, tmp_path):
    folder, paths = files
    reports = {}
    for kind, path in paths.items():
        assert main(["eval", str(path), "--data", str(folder), "--out", str(tmp_path / kind), "--quiet",
                     "--no-optimize"]) == 0
        reports[kind] = json.loads((tmp_path / kind / "report.json").read_text())
    for kind in ("exported", "converted"):
        assert reports[kind]["confusion"] == reports["pt"]["confusion"], kind
        assert reports[kind]["loss"] == pytest.approx(reports["pt"]["loss"], abs=1e-5)
    assert reports["pt"]["images"] == 12 and reports["converted"]["class_names"] == CLASSES


def test_metadata_round_trips_through_pt_and_safetensors(tmp_path):
    model = create_model("inception_cifar", num_classes=3)
    meta = {"model_name": "inception_cifar", "model_kwargs": {"num_classes": 3, "aux_logits": False},
            "class_names": ["ant", "bee", "cat"], "preprocess": get_spec("inception_cifar").preprocess.to_dict(),
            "layout": "inceptionnet", "config": {"options": {"data": "cifar", "seed": 3}}, "precision": "fp32"}
    read = {}
    for suffix in ("pt", "safetensors"):
        save_model(tmp_path / f"m.{suffix}", model.state_dict(), meta)
        read[suffix] = read_metadata(tmp_path / f"m.{suffix}")
    assert read["pt"].pop("kind") == "checkpoint" and read["safetensors"].pop("kind") == "safetensors"
    written = json.loads(json.dumps(meta))  # the preprocessing's tuples are lists in either file
    assert read["pt"] == read["safetensors"] == {**written, "format": "inceptionnet-checkpoint", "version": 1}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "m.pt").model(x), load_model(tmp_path / "m.safetensors").model(x))


def test_a_peer_layout_safetensors_loads_through_its_layout(tmp_path):
    model = create_model("resnet18", num_classes=4).eval()
    save_weights(model, tmp_path / "tv.safetensors", source="torchvision")
    loaded = load_model(tmp_path / "tv.safetensors")
    assert loaded.meta["layout"] == "torchvision" and loaded.class_names == ["0", "1", "2", "3"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


class Payload:
    """Pickles as a call that writes `marker`: what a malicious model file runs when it is unpickled unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "the payload ran")


def not_model_files(root: Path) -> dict[str, Path]:
    """Files that are no model files, each in a different way; the pickles would write root/ran.txt if run."""
    marker = root / "ran.txt"
    paths = {name: root / name for name in ("notes.txt", "random.bin", "payload.pkl", "payload.pt", "archive.zip",
                                            "plain.pt", "foreign.safetensors")}
    paths["notes.txt"].write_text("these are notes, not weights\n" * 10)
    paths["random.bin"].write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.uint8).numpy().tobytes())
    paths["payload.pkl"].write_bytes(pickle.dumps(Payload(marker)))
    torch.save({"model": Payload(marker)}, paths["payload.pt"])
    with zipfile.ZipFile(paths["archive.zip"], "w") as archive:
        archive.writestr("readme.txt", "a zip, not a PyTorch file")
    torch.save(create_model("inception_cifar", num_classes=3).state_dict(), paths["plain.pt"])
    save_weights(torch.nn.Linear(2, 2), paths["foreign.safetensors"])
    return paths


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_files_that_are_no_model_files_get_one_line_naming_them(tmp_path, files, capsys, command):
    folder, _ = files
    for name, path in not_model_files(tmp_path).items():
        assert main([command, str(path), str(folder) if command == "predict" else f"--data={folder}"]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and EXPECTED in err[0], err
        assert "weights_only" not in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "ran.txt").exists()


def test_not_a_model_file_is_a_weights_error(tmp_path):
    path = not_model_files(tmp_path)["payload.pt"]
    with pytest.raises(NotAModelFileError, match="never loaded") as caught:
        load_model(path)
    assert isinstance(caught.value, WeightsError) and not (tmp_path / "ran.txt").exists()
