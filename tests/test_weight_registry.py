"""The weight registry against torchvision's Weights enums and timm's pretrained_cfg (metadata only)."""

import pytest
import torchvision.models as tvm
from timm.models import get_pretrained_cfg

from inceptionnet import get_spec, list_models
from inceptionnet.weights import class_names, get_weights, list_weights

TORCHVISION = {
    "googlenet_tv.tv_in1k": tvm.GoogLeNet_Weights.IMAGENET1K_V1,
    "inception_v3.tv_in1k": tvm.Inception_V3_Weights.IMAGENET1K_V1,
    "resnet18.tv_in1k": tvm.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34.tv_in1k": tvm.ResNet34_Weights.IMAGENET1K_V1,
}
TIMM = ["inception_v3.tf_in1k", "inception_v3.gluon_in1k", "inception_v4.tf_in1k", "inception_resnet_v2.tf_in1k"]


def test_every_record_names_a_registered_model_with_that_layout():
    assert {w.tag for w in list_weights()} >= set(TORCHVISION) | set(TIMM) | {"bn_inception_caffe.in1k"}
    for w in list_weights():
        assert w.model in list_models()
        assert w.source in get_spec(w.model).peers, w.tag
        assert bool(w.url) != bool(w.hf_hub_id), w.tag
        assert (w.sha256_prefix != "") == bool(w.url), w.tag  # every URL file carries its hash
        assert 0 < w.top5 - w.top1 < 30 and w.file_mb > 1 and w.license


@pytest.mark.parametrize("tag", sorted(TORCHVISION))
def test_torchvision_records_match_torchvision(tag):
    ours, theirs = get_weights(tag), TORCHVISION[tag]
    assert ours.url == theirs.url
    metrics = theirs.meta["_metrics"]["ImageNet-1K"]
    assert (ours.top1, ours.top5, ours.file_mb) == (metrics["acc@1"], metrics["acc@5"], theirs.meta["_file_size"])
    tf = theirs.transforms()
    pre = ours.preprocess
    assert [pre.input_size] == tf.crop_size and [round(pre.input_size / pre.crop_pct)] == tf.resize_size
    assert list(pre.mean) == tf.mean and list(pre.std) == tf.std and pre.input_range == 1.0
    assert pre.interpolation == tf.interpolation.value and pre.channel_order == "RGB"
    assert class_names(ours) == theirs.meta["categories"] and len(class_names(ours)) == ours.num_classes
    assert ours.label_offset == 0


@pytest.mark.parametrize("tag", TIMM)
def test_timm_records_match_timm_pretrained_cfg(tag):
    ours, cfg = get_weights(tag), get_pretrained_cfg(tag)
    assert ours.hf_hub_id == cfg.hf_hub_id and ours.hf_filename == "model.safetensors"
    pre = ours.preprocess
    assert (3, pre.input_size, pre.input_size) == cfg.input_size
    assert (pre.mean, pre.std, pre.crop_pct, pre.interpolation) == (cfg.mean, cfg.std, cfg.crop_pct, cfg.interpolation)
    assert ours.num_classes == cfg.num_classes and ours.label_offset == 0  # timm dropped TF's background class
    assert ours.license.lower().startswith(cfg.license.lower())


def test_defaults_follow_timm_for_the_inception_models():
    # A model's first record is its default: timm's default tag for the models timm has (resnet18's timm
    # default is a timm-trained file we do not list; ours is torchvision's).
    for model in ("inception_v3", "inception_v4", "inception_resnet_v2"):
        assert get_weights(model).tag == f"{model}.{get_pretrained_cfg(model).tag}"
    assert get_weights("resnet18").url == get_pretrained_cfg("resnet18.tv_in1k").url
