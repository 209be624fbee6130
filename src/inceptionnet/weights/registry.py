"""The weight registry: one `WeightSpec` per published weight file of each weight-compatible model,
by tag (`<model>.<origin>`, timm's naming): where the file lives, how it is checked, the layout it is
converted from, the preprocessing it was trained with, its classes and its published accuracy.

Sources of each record: the URL, accuracy, size and preprocessing of torchvision's files are those of
`torchvision.models.<Model>_Weights.IMAGENET1K_V1`; the Hub ids and preprocessing of timm's files are
timm's `pretrained_cfg`, and their accuracy timm's results-imagenet.csv; the BN-Inception record is
Cadene's `pretrainedmodels` (its settings and README). tests/test_weight_registry.py checks the URLs,
Hub ids and preprocessing against torchvision and timm themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, Preprocess

# torchvision's transform_input: its GoogLeNet and Inception-v3 files expect (x - 0.5) / 0.5 and get it from
# ImageNet-normalised x as x * std / 0.5 + (mean - 0.5) / 0.5; folded into conv1 on loading.
TV_INPUT_SCALE = tuple(s / 0.5 for s in IMAGENET_STD)
TV_INPUT_SHIFT = tuple((m - 0.5) / 0.5 for m in IMAGENET_MEAN)
IMAGENET_1K = "imagenet-1k"


@dataclass(frozen=True)
class WeightSpec:
    """One published weight file.

    Location: `url` (torchvision, Cadene: fetched with torch.hub into its cache) or `hf_hub_id` +
    `hf_filename` (timm's files on the Hugging Face Hub: fetched with huggingface_hub into its cache).
    Check: `sha256_prefix`, the hash prefix in a torch.hub file name, verified against the file's
    SHA-256 (torch.hub's check_hash); a Hub file is verified against the SHA-256 the Hub publishes for
    it (its LFS object id, the name of the cached blob). `source` is the layout it is converted from;
    `fold_input` the first conv (and its BN) that takes in torchvision's transform_input, with
    `model_kwargs` the constructor options the folded weights need. `classes` names the label set
    (ImageNet-1k in torchvision's order); `label_offset` is 1 for a file with a TF background class at
    index 0. `top1`/`top5` are the publisher's ImageNet-1k validation figures; `file_mb` the size in MB
    (torchvision's own figure where it gives one, else parameters x 4 bytes).
    """

    tag: str
    source: str
    preprocess: Preprocess
    top1: float
    top5: float
    file_mb: float
    license: str
    accuracy_from: str
    url: str = ""
    hf_hub_id: str = ""
    hf_filename: str = "model.safetensors"
    fold_input: tuple[str, str] | None = None
    model_kwargs: dict = field(default_factory=dict)
    num_classes: int = 1000
    classes: str = IMAGENET_1K
    label_offset: int = 0
    notes: str = ""

    @property
    def model(self) -> str:
        """The registered model these weights load into."""
        return self.tag.split(".", 1)[0]

    @property
    def file_name(self) -> str:
        """The published file name: the URL's last part, or `<tag>.safetensors` for a Hub file."""
        return self.url.rsplit("/", 1)[-1] if self.url else f"{self.tag}.{self.hf_filename.rsplit('.', 1)[-1]}"

    @property
    def sha256_prefix(self) -> str:
        """The SHA-256 prefix a torch.hub file name carries (`name-<hex>.pth`), '' for Hub files."""
        match = re.search(r"-([a-f0-9]+)\.", self.file_name) if self.url else None
        return match.group(1) if match else ""

    @property
    def location(self) -> str:
        return self.url or f"hf-hub:{self.hf_hub_id}/{self.hf_filename}"


def _tv(tag: str, url: str, top1: float, top5: float, file_mb: float, size: int = 224, resize: int = 256,
        **kw) -> WeightSpec:
    """A torchvision file: ImageNet mean/std, bilinear resize to `resize`, centre crop `size`."""
    pre = Preprocess(input_size=size, crop_pct=size / resize, interpolation="bilinear")
    return WeightSpec(tag=tag, source="torchvision", url=url, preprocess=pre, top1=top1, top5=top5, file_mb=file_mb,
                      license="BSD-3-Clause (torchvision)", accuracy_from="torchvision Weights.meta", **kw)


def _timm(tag: str, top1: float, top5: float, params_m: float, crop_pct: float = 0.875,
          mean=INCEPTION_MEAN, std=INCEPTION_STD, **kw) -> WeightSpec:
    """A timm file on the Hugging Face Hub (`timm/<tag>`): 299 bicubic, timm's crop_pct and mean/std."""
    pre = Preprocess(input_size=299, mean=mean, std=std, interpolation="bicubic", crop_pct=crop_pct)
    return WeightSpec(tag=tag, source="timm", hf_hub_id=f"timm/{tag}", preprocess=pre, top1=top1, top5=top5,
                      file_mb=round(params_m * 4, 1), license="Apache-2.0 (timm)",
                      accuracy_from="timm results-imagenet.csv", **kw)


# The folded GoogLeNet pads conv1 (7x7, padding 3) with the value transform_input maps to 0.
_GOOGLENET_PAD_FILL = tuple(-t / s for t, s in zip(TV_INPUT_SHIFT, TV_INPUT_SCALE, strict=True))

WEIGHTS: tuple[WeightSpec, ...] = (
    _tv("googlenet_tv.tv_in1k", "https://download.pytorch.org/models/googlenet-1378be20.pth", 69.778, 89.53, 49.731,
        fold_input=("conv1.conv.weight", "conv1.bn"), model_kwargs={"input_pad_fill": _GOOGLENET_PAD_FILL},
        notes="ported from the GoogLeNet paper's release; torchvision's transform_input folded into conv1"),
    _tv("inception_v3.tv_in1k", "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        77.294, 93.45, 103.903, size=299, resize=342, fold_input=("Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn"),
        notes="the TF release as torchvision ships it; transform_input folded into Conv2d_1a_3x3 (no padding: exact)"),
    _timm("inception_v3.tf_in1k", 77.866, 93.644, 23.83, notes="the TF-slim release, ported by timm"),
    _timm("inception_v3.gluon_in1k", 78.806, 94.372, 23.83, mean=IMAGENET_MEAN, std=IMAGENET_STD,
          notes="trained with MXNet Gluon; ImageNet mean/std input"),
    _timm("inception_v4.tf_in1k", 80.144, 94.982, 42.68, notes="the TF-slim release, ported by timm"),
    _timm("inception_resnet_v2.tf_in1k", 80.434, 95.312, 55.84, crop_pct=0.8975,
          notes="the TF-slim release, ported by timm"),
    WeightSpec(
        tag="bn_inception_caffe.in1k", source="cadene",
        url="http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
        preprocess=Preprocess(input_size=224, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), input_range=255.0,
                              channel_order="BGR", interpolation="bilinear", crop_pct=0.875),
        top1=73.524, top5=91.562, file_mb=45.2, license="BSD-3-Clause (pretrainedmodels)",
        accuracy_from="pretrainedmodels README", notes="the Caffe BN-Inception release converted by Cadene"),
    _tv("resnet18.tv_in1k", "https://download.pytorch.org/models/resnet18-f37072fd.pth", 69.758, 89.078, 44.661),
    _tv("resnet34.tv_in1k", "https://download.pytorch.org/models/resnet34-b627a593.pth", 73.314, 91.42, 83.275),
)
_BY_TAG = {spec.tag: spec for spec in WEIGHTS}


def list_weights(model: str | None = None) -> list[WeightSpec]:
    """Every weight record, or those of `model`, in registry order (a model's default first)."""
    return [spec for spec in _BY_TAG.values() if model is None or spec.model == model]


def get_weights(tag: str) -> WeightSpec:
    """The record of `tag`; a bare model name gives its default weights. `ConfigError` naming the known
    tags otherwise."""
    if tag in _BY_TAG:
        return _BY_TAG[tag]
    defaults = list_weights(tag)
    if defaults:
        return defaults[0]
    raise ConfigError(f"unknown weights {tag!r}; known tags: {', '.join(_BY_TAG)}")


def default_weights(model: str) -> WeightSpec | None:
    """The default weights of `model` (its first record), None for a model without published weights."""
    found = list_weights(model)
    return found[0] if found else None


def class_names(spec: WeightSpec) -> list[str]:
    """The names of `spec`'s classes by our class index (ImageNet-1k as torchvision ships them)."""
    return imagenet_classes()


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in torchvision's order."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)
