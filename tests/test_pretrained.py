"""Pretrained weights by tag: files planted in temporary torch.hub / Hugging Face caches under the names
those libraries use, hash checks, the offline message, weights folders and torchvision's transform_input
folded into conv1 (same logits as torchvision's model). Nothing is downloaded."""

import os

import pytest
import torch
import torchvision.models as tvm

from inceptionnet import WeightsError, create_model, export_state_dict
from inceptionnet.weights import cached_path, get_weights, load_pretrained
from peer_parity import randomize_bn
from weight_files import caches, plant_hf_hub, plant_torch_hub  # noqa: F401 (caches: an autouse fixture)


def calibrate_bn(model: torch.nn.Module, size: int) -> torch.nn.Module:
    """BN statistics of a random batch, so a random network keeps O(1) activations and absolute
    float32 differences mean something (random BN statistics blow logits up to ~1e7)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a plain average over the calibration batch
    aux = getattr(model, "AuxLogits", None)  # torchvision's v3 aux head needs 299 pixels; it is not calibrated
    model.AuxLogits = None
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, size, size))
    model.AuxLogits = aux
    return model.eval()


@pytest.mark.parametrize("tag,peer_fn,size", [
    ("googlenet_tv.tv_in1k", tvm.googlenet, 64),
    ("inception_v3.tv_in1k", tvm.inception_v3, 75),
])
def test_torchvision_file_with_transform_input_folded_gives_torchvision_logits(tmp_path, monkeypatch, tag, peer_fn,
                                                                              size):
    torch.manual_seed(0)
    peer = calibrate_bn(peer_fn(weights=None, aux_logits=True, transform_input=True, init_weights=True), size)
    plant_torch_hub(tmp_path, monkeypatch, tag, peer.state_dict())
    model = create_model(tag.split(".")[0], pretrained=True, aux_logits=False).eval()
    assert not getattr(model, "transform_input", False)  # folded into conv1: no hidden preprocessing
    assert not list(model.aux_parameters()) and model.weights_spec.tag == tag
    x = torch.randn(2, 3, size, size, dtype=torch.float32)
    with torch.no_grad():
        reference = peer(x)
        diff = (model(x) - reference).abs().max().item()
        # float32's own error on this random (chaotic) net: torchvision's model in float32 against float64
        noise = (reference.double() - peer.double()(x.double())).abs().max().item()
    assert reference.abs().max() > 0.1
    # float32: the fold re-associates sums, so the bound is float32's own error (random nets amplify it).
    assert diff <= max(1e-5, 2 * noise), (diff, noise)
    # float64 file and models: the folded model is torchvision's, to rounding (the fold is exact arithmetic).
    peer64 = peer.double()
    plant_torch_hub(tmp_path, monkeypatch, tag, peer64.state_dict())
    spec = get_weights(tag)
    model64 = create_model(spec.model, aux_logits=False, **spec.model_kwargs).double().eval()
    load_pretrained(model64, spec)  # into float64 parameters: no rounding to float32 on the way
    with torch.no_grad():
        reference64 = peer64(x.double())
        # (GoogLeNet's pad fill is a float32 buffer: ~1e-8 of the output; without it ~1e-13)
        assert (model64(x.double()) - reference64).abs().max() <= 1e-7 * reference64.abs().max()


def test_wrong_hash_in_the_cache_is_deleted(tmp_path):
    spec = get_weights("bn_inception_caffe.in1k")
    path = tmp_path / "torch" / "hub" / "checkpoints" / spec.file_name
    path.parent.mkdir(parents=True)
    torch.save(create_model("bn_inception_caffe").state_dict(), path)
    with pytest.raises(WeightsError, match="deleted") as e:
        create_model("bn_inception_caffe", pretrained=True)
    assert spec.sha256_prefix in str(e.value) and "\n" not in str(e.value)
    assert not path.exists()


def test_cadene_file_loads_from_the_cache(tmp_path, monkeypatch):
    source = randomize_bn(create_model("bn_inception_caffe")).eval()
    plant_torch_hub(tmp_path, monkeypatch, "bn_inception_caffe.in1k", export_state_dict(source, "cadene"))
    model = create_model("bn_inception_caffe.in1k", num_classes=7).eval()  # a new head for fine-tuning
    assert torch.equal(model.conv1_7x7_s2.weight, source.conv1_7x7_s2.weight)
    assert model.last_linear.out_features == 7


def test_timm_file_loads_from_the_hub_cache_and_a_bad_blob_is_deleted(tmp_path):
    torch.manual_seed(0)
    source = randomize_bn(create_model("inception_v4")).eval()
    state = export_state_dict(source, "timm")
    plant_hf_hub(tmp_path, "timm/inception_v4.tf_in1k", state)
    spec = get_weights("inception_v4.tf_in1k")
    assert cached_path(spec) is not None
    features = create_model("inception_v4", pretrained=True, features_only=True, out_indices=[-1]).eval()
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        assert torch.equal(features(x)[0], source.forward_features(x))
    bad = plant_hf_hub(tmp_path / "other", "timm/inception_v3.tf_in1k", {"w": torch.zeros(2)}, blob_name="ab" * 32)
    os.environ["HF_HOME"] = str(tmp_path / "other" / "hf")
    with pytest.raises(WeightsError, match="deleted"):
        create_model("inception_v3.tf_in1k")
    assert not bad.exists()


def test_offline_without_the_file_is_one_line_naming_file_and_place(tmp_path):
    for tag in ("resnet18.tv_in1k", "inception_resnet_v2.tf_in1k"):
        with pytest.raises(WeightsError) as e:
            create_model(tag)
        message = str(e.value)
        assert "\n" not in message and "offline" in message and "--weights-dir" in message
        assert get_weights(tag).file_name in message or "model.safetensors" in message


def test_weights_dir_serves_files_under_their_published_names(tmp_path, monkeypatch):
    source = create_model("resnet18").eval()
    spec = plant_torch_hub(tmp_path, monkeypatch, "resnet18.tv_in1k", source.state_dict())
    folder = tmp_path / "airgap"
    folder.mkdir()
    (tmp_path / "torch" / "hub" / "checkpoints" / spec.file_name).rename(folder / spec.file_name)
    monkeypatch.setenv("INCEPTIONNET_WEIGHTS", str(folder))
    model = create_model("resnet18", pretrained=True)
    assert torch.equal(model.fc.weight, source.fc.weight)
    torch.save({"fc.weight": torch.zeros(1)}, folder / spec.file_name)  # damaged: refused, never deleted
    with pytest.raises(WeightsError, match="replace it"):
        create_model("resnet18", pretrained=True)
    assert (folder / spec.file_name).exists()


def test_a_model_without_weights_says_which_have_them():
    with pytest.raises(Exception, match="no published weights.*googlenet_tv"):
        create_model("googlenet_cifar", pretrained=True)
