"""The CLI with published weights: `weights`, `predict --pretrained` (ImageNet names, the weights'
preprocessing), `embed`, the offline message (exit 2), and training that starts from ImageNet weights
by default. Files are planted in temporary caches; nothing is downloaded."""

import csv
import json

import numpy as np
import pytest
import torch
from torchvision.models._meta import _IMAGENET_CATEGORIES

from image_folders import make_image_folder
from inceptionnet import create_model
from inceptionnet.artifacts import load_model, read_metadata
from inceptionnet.cli import main
from inceptionnet.engine.checkpoint import load_checkpoint
from inceptionnet.models.resnet import ResNet
from inceptionnet.train_api import prepare_run
from inceptionnet.weights import get_weights, list_weights
from weight_files import caches, plant_torch_hub  # noqa: F401 (caches: an autouse fixture)


@pytest.fixture
def resnet18_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    return plant_torch_hub(tmp_path, monkeypatch, "resnet18.tv_in1k", create_model("resnet18").state_dict())


def test_weights_lists_every_tag_with_accuracy_and_cache_state(resnet18_file, capsys):
    assert main(["weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(list_weights())
    row = next(line for line in lines if line.startswith("resnet18.tv_in1k"))
    assert "69.76" in row and resnet18_file.file_name in row
    assert "not cached" in next(line for line in lines if line.startswith("inception_v4.tf_in1k"))


def test_offline_without_the_file_is_one_line_and_exit_2(tmp_path, capsys):
    image = make_image_folder(tmp_path / "images", classes=1, per_class=1) / "class0" / "0.png"
    assert main(["predict", "--pretrained", "resnet34.tv_in1k", str(image)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resnet34-b627a593.pth" in err[0] and "--weights-dir" in err[0]


def test_predict_pretrained_prints_imagenet_names_with_the_weights_preprocessing(resnet18_file, tmp_path, capsys):
    folder = make_image_folder(tmp_path / "images", classes=1, per_class=2)
    assert main(["predict", "--pretrained", "resnet18", str(folder), "--topk", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2 and all(p["class"] == _IMAGENET_CATEGORIES[p["index"]]
                                     for r in results for p in r["predictions"])
    assert read_metadata("resnet18.tv_in1k")["preprocess"] == get_weights("resnet18.tv_in1k").preprocess.to_dict()


def test_embed_writes_one_row_per_image_and_names_skipped_files(resnet18_file, tmp_path, capsys):
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=2)
    (folder / "class1" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "emb.npy"
    assert main(["embed", "resnet18.tv_in1k", str(folder), "--out", str(out)]) == 0
    assert "broken.png" in capsys.readouterr().err
    embeddings = np.load(out)
    rows = list(csv.reader(open(tmp_path / "emb.csv")))[1:]
    assert embeddings.shape == (4, 512) and len(rows) == 4 and not any("broken" in r[1] for r in rows)
    model = create_model("resnet18", pretrained=True).eval()
    assert np.isfinite(embeddings).all() and model.feature_info[-1]["num_chs"] == embeddings.shape[1]


def test_training_on_data_starts_from_imagenet_weights_when_it_can(tmp_path, monkeypatch, capsys):
    data = make_image_folder(tmp_path / "data")
    options, _, _ = prepare_run(data=str(data), out=str(tmp_path / "a"))  # offline, nothing cached
    # From scratch, the auto recipe picks the model: its CIFAR-form network for these 36 px images.
    assert options.model == "inception_cifar" and options.weights is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "from scratch" in err[0] and "googlenet-1378be20.pth" in err[0]
    assert prepare_run(data=str(data), pretrained=False, out=str(tmp_path / "b"))[0].model == "inception_cifar"
    assert prepare_run(model="inception_cifar", data=str(data), out=str(tmp_path / "c"))[0].weights is None
    torch.manual_seed(0)
    plant_torch_hub(tmp_path, monkeypatch, "googlenet_tv.tv_in1k", create_model("googlenet_tv").state_dict())
    options, _, _ = prepare_run(data=str(data), out=str(tmp_path / "d"))
    assert (options.model, options.weights) == ("googlenet_tv", "googlenet_tv.tv_in1k")


@pytest.mark.slow
def test_fine_tuning_from_a_tag_trains_the_head_alone_first(resnet18_file, tmp_path):
    # resnet18's recipe is `finetune`: one head-only epoch, and BN frozen at 8 images per device (< 16).
    data = make_image_folder(tmp_path / "data", size=40)
    assert main(["train", "--pretrained", "resnet18.tv_in1k", "--data", str(data), "--epochs", "1",
                 "--batch-size", "8", "--img-size", "32", "--device", "cpu", "--quiet", "--out",
                 str(tmp_path / "run")]) == 0
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    start = torch.load(tmp_path / "torch" / "hub" / "checkpoints" / resnet18_file.file_name, weights_only=True)
    assert ckpt["model_name"] == "resnet18" and ckpt["model_kwargs"]["num_classes"] == 3
    assert ckpt["config"]["options"]["weights"] == "resnet18.tv_in1k"
    assert tuple(ckpt["preprocess"]["mean"]) == resnet18_file.preprocess.mean
    trained = ckpt["model"]
    assert ckpt["config"]["recipe"]["head_only_epochs"] == 1
    for key in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_mean", "layer2.0.bn1.running_var"):
        assert torch.equal(trained[key], start[key]), key  # body frozen, BN statistics kept
    assert trained["fc.weight"].shape == (3, 512)


def test_loading_a_tag_builds_the_model_once_with_the_published_weights(resnet18_file, monkeypatch):
    torch.manual_seed(0)
    expected = create_model("resnet18").state_dict()
    built = []
    init = ResNet.__init__
    monkeypatch.setattr(ResNet, "__init__", lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    loaded = load_model("resnet18.tv_in1k")
    assert len(built) == 1 and not loaded.model.training
    assert all(torch.equal(loaded.model.state_dict()[k], expected[k]) for k in ("conv1.weight", "fc.bias"))
    assert loaded.class_names == list(_IMAGENET_CATEGORIES)
