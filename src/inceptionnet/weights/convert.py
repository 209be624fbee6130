"""Loading, converting and exporting weights: our own checkpoints and torchvision/timm/cadene
state_dicts, from local files (PyTorch pickles loaded with `weights_only=True`, or safetensors)
or URLs (http, https, file)."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import PartialLoadWarning, WeightsError
from ..models.base import is_aux_key

SOURCES = ("inceptionnet", "torchvision", "timm", "cadene")
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")


@dataclass
class LoadReport:
    """What `load_weights` did: keys not in the file, keys not in the model, shape mismatches, and
    aux heads left at their random initialisation."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    random_aux: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("mis-shaped", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:6]) + (f", ... ({len(keys) - 6} more)" if len(keys) > 6 else "")
                parts.append(f"{len(keys)} {label} key(s): {shown}")
        return "; ".join(parts)


def _is_url(location: str) -> bool:
    return urllib.parse.urlparse(location).scheme in ("http", "https", "file")


def _fetch(url: str) -> Path:
    """Download `url` once into the torch hub cache and return the local path."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / os.path.basename(parsed.path)
    if not target.exists():
        try:
            torch.hub.download_url_to_file(url, str(target), progress=False)
        except Exception as e:  # network errors come in many types; the user needs the URL and reason
            raise WeightsError(f"could not download {url}: {e}") from None
    return target


def read_state_dict(location: str | os.PathLike) -> dict[str, Tensor]:
    """Read a flat {name: tensor} dict from a file or URL.

    Accepts safetensors files, plain state_dicts and checkpoints that wrap one under "model" or
    "state_dict" (ours, Lightning's, timm's train scripts); a DDP "module." prefix is removed.
    """
    location = str(location)
    path = _fetch(location) if _is_url(location) else Path(location)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch/safetensors raise many types for a damaged file
        raise WeightsError(f"cannot read weights from {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state_dict (a dict of tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _check_source(model: nn.Module, source: str) -> None:
    if source not in SOURCES:
        raise WeightsError(f"unknown weight source {source!r}; choose one of {', '.join(SOURCES)}")
    spec = getattr(model, "spec", None)
    if source != "inceptionnet" and spec is not None and source not in spec.peers:
        raise WeightsError(f"model {spec.name!r} is not laid out like any {source} model; "
                           f"it loads from: {', '.join(['inceptionnet', *spec.peers]) }")


def convert_state_dict(model: nn.Module, state_dict: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Map a `source`-format state_dict onto `model`'s key names (a model defines
    `state_dict_from_peer(sd, source)` when its names differ from the peer's)."""
    _check_source(model, source)
    if source != "inceptionnet" and hasattr(model, "state_dict_from_peer"):
        return model.state_dict_from_peer(dict(state_dict), source)
    return dict(state_dict)


def load_weights(model: nn.Module, location: str | os.PathLike, source: str = "inceptionnet",
                 strict: bool = True, aux: str = "keep") -> LoadReport:
    """Load weights from a file or URL into `model`, converting from `source`'s layout.

    `aux="keep"` loads aux-head weights when the model has aux heads; `aux="drop"` ignores them
    (the heads keep their random initialisation). Aux weights in the file are skipped when the model
    was built without aux heads. A model aux head without weights triggers a warning. With
    `strict=True` any other missing, unexpected or mis-shaped key raises `WeightsError`.
    """
    return load_state_dict(model, read_state_dict(location), source, strict, aux, origin=str(location))


def load_state_dict(model: nn.Module, state_dict: dict[str, Tensor], source: str = "inceptionnet",
                    strict: bool = True, aux: str = "keep", origin: str = "state_dict") -> LoadReport:
    """`load_weights` for a state_dict already in memory; `origin` names it in messages."""
    if aux not in ("keep", "drop"):
        raise WeightsError(f"aux must be 'keep' or 'drop', got {aux!r}")
    state = convert_state_dict(model, state_dict, source)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not (is_aux_key(model, k) and (aux == "drop" or k not in own))}
    report = LoadReport()
    report.unexpected = sorted(k for k in state if k not in own)
    report.mismatched = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                               for k in state if k in own and state[k].shape != own[k].shape)
    # BN batch counters are not weights: checkpoints saved before PyTorch 0.4 (the Caffe-converted
    # BN-Inception among them) have none, and the model keeps its own.
    missing = sorted(k for k in own if k not in state and not k.endswith(".num_batches_tracked"))
    report.random_aux = sorted({k.split(".")[0] for k in missing if is_aux_key(model, k)})
    report.missing = [k for k in missing if not is_aux_key(model, k)]
    if strict and not report.ok:
        raise WeightsError(f"{origin} does not fit {type(model).__name__} ({source} layout): {report.describe()}")
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(loadable, strict=False)
    if report.random_aux:
        warnings.warn(f"aux head(s) {', '.join(report.random_aux)} keep random weights: {origin} has none "
                      "for them", stacklevel=2)
    if not strict and not report.ok:
        warnings.warn(f"partial load from {origin}: {report.describe()}", PartialLoadWarning, stacklevel=2)
    return report


def export_state_dict(model: nn.Module, source: str = "inceptionnet") -> dict[str, Tensor]:
    """`model`'s weights as a state_dict in `source`'s layout (a model defines
    `state_dict_to_peer(sd, source)` when its names differ from the peer's)."""
    _check_source(model, source)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if source != "inceptionnet" and hasattr(model, "state_dict_to_peer"):
        state = model.state_dict_to_peer(state, source)
    return state


def fold_input_affine(state_dict: dict[str, Tensor], conv: str, bn: str, scale: Sequence[float],
                      shift: Sequence[float]) -> dict[str, Tensor]:
    """Fold a per-channel input transform `x * scale + shift` into the first convolution, so the
    model takes `x` directly: the conv weight `conv` (out, in, kh, kw) is scaled per input channel, and
    the constant it adds (weight . shift) is subtracted from the running mean of the BN `bn` that
    follows it (BN(y + b) with mean m equals BN(y) with mean m - b). Computed in float64.

    Exact where the convolution reads no padding; over zero padding the original saw 0 after the
    transform, which is `-shift / scale` before it (`GoogLeNet(input_pad_fill=...)` pads with that).
    """
    out = dict(state_dict)
    weight = state_dict[conv].double()
    scale_t = torch.tensor(scale, dtype=torch.float64).view(1, -1, 1, 1)
    shift_t = torch.tensor(shift, dtype=torch.float64).view(1, -1, 1, 1)
    out[conv] = (weight * scale_t).to(state_dict[conv].dtype)
    added = (weight * shift_t).sum((1, 2, 3))
    mean_key = f"{bn}.running_mean"
    out[mean_key] = (state_dict[mean_key].double() - added).to(state_dict[mean_key].dtype)
    return out
