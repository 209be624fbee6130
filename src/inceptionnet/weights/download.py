"""Getting a registered weight file onto this machine, once: a `--weights-dir` / `INCEPTIONNET_WEIGHTS`
folder first (air-gapped machines), then torch.hub's cache (torchvision and Cadene files) or
huggingface_hub's cache (timm's files), downloading there with a progress bar when missing. Every
file is hash-checked before use; a cached file that fails is deleted and the error says so.

Offline (`HF_HUB_OFFLINE=1` or `INCEPTIONNET_OFFLINE=1`) nothing is downloaded: a missing file is
one `WeightsError` line naming the file and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from ..errors import WeightsError
from .registry import WeightSpec

WEIGHTS_DIR_ENV = "INCEPTIONNET_WEIGHTS"
_TRUE = ("1", "true", "yes", "on")


def is_offline() -> bool:
    """True when the environment forbids downloads (HF_HUB_OFFLINE or INCEPTIONNET_OFFLINE)."""
    return any(os.environ.get(name, "").lower() in _TRUE for name in ("HF_HUB_OFFLINE", "INCEPTIONNET_OFFLINE"))


def torch_hub_path(spec: WeightSpec) -> Path:
    """Where torch.hub keeps (or would keep) a URL file: <torch hub dir>/checkpoints/<file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.file_name


def hf_cache_dir() -> Path:
    """huggingface_hub's cache folder, read from the environment now (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def weights_dir_candidates(spec: WeightSpec, weights_dir: str | os.PathLike | None) -> list[Path]:
    """The paths in `weights_dir` (or $INCEPTIONNET_WEIGHTS) that may hold `spec`'s file: its published
    name, and for a Hub file also `<repo id>/<file name>`."""
    folder = weights_dir or os.environ.get(WEIGHTS_DIR_ENV)
    if not folder:
        return []
    paths = [Path(folder) / spec.file_name]
    if spec.hf_hub_id:
        paths.append(Path(folder) / spec.hf_hub_id / spec.hf_filename)
    return paths


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_sha256(spec: WeightSpec, path: Path) -> str:
    """What `path`'s SHA-256 must start with: the torch.hub file-name prefix, or for a Hub file the
    blob name huggingface_hub stores it under (the SHA-256 the Hub publishes for an LFS file); '' if
    nothing is known (then nothing can be checked)."""
    if spec.sha256_prefix:
        return spec.sha256_prefix
    blob = path.resolve().name
    return blob if re.fullmatch(r"[0-9a-f]{64}", blob) else ""


def verify(spec: WeightSpec, path: Path, delete: bool) -> Path:
    """Check `path`'s SHA-256 against what is published for `spec`; on a mismatch delete the file when
    `delete` (a cache file) and raise `WeightsError` saying what happened."""
    expected = expected_sha256(spec, path)
    actual = sha256_of(path)
    if expected and not actual.startswith(expected):
        target = path.resolve()
        if delete:
            target.unlink()
            if path.is_symlink():
                path.unlink()
        action = "deleted it; run again to download it afresh" if delete else "replace it with the published file"
        raise WeightsError(f"{spec.tag}: {path} has SHA-256 {actual[:12]}..., expected {expected[:12]}...: "
                           f"{action}")
    return path


def where_to_put(spec: WeightSpec) -> str:
    """One sentence naming the file and where it goes."""
    if spec.url:
        return (f"download {spec.url} and put it into {torch_hub_path(spec).parent}/ or into a folder given by "
                f"--weights-dir / ${WEIGHTS_DIR_ENV}")
    return (f"download {spec.hf_filename} of https://huggingface.co/{spec.hf_hub_id} and put it into a folder given "
            f"by --weights-dir / ${WEIGHTS_DIR_ENV} as {spec.file_name} (or run once online to fill {hf_cache_dir()})")


def cached_path(spec: WeightSpec, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The local file of `spec` if one is present (weights dir, then the library cache), unchecked."""
    for path in weights_dir_candidates(spec, weights_dir):
        if path.is_file():
            return path
    if spec.url:
        path = torch_hub_path(spec)
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.hf_hub_id, spec.hf_filename, cache_dir=str(hf_cache_dir()))
    return Path(found) if isinstance(found, str) else None


def fetch_weights(spec: WeightSpec, weights_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The verified local file of `spec`: from the weights dir, the cache, or downloaded into the cache."""
    for path in weights_dir_candidates(spec, weights_dir):
        if path.is_file():
            return verify(spec, path, delete=False)
    path = cached_path(spec)
    if path is None:
        if is_offline():
            raise WeightsError(f"{spec.tag} is not cached and downloads are off (offline): {where_to_put(spec)}")
        path = _download(spec, progress)
    return verify(spec, path, delete=True)


def _download(spec: WeightSpec, progress: bool) -> Path:
    try:
        if spec.url:
            target = torch_hub_path(spec)
            target.parent.mkdir(parents=True, exist_ok=True)
            # torch.hub checks the hash prefix of the file name and removes a bad download itself.
            torch.hub.download_url_to_file(spec.url, str(target), hash_prefix=spec.sha256_prefix or None,
                                           progress=progress)
            return target
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(spec.hf_hub_id, spec.hf_filename, cache_dir=str(hf_cache_dir())))
    except Exception as e:  # network and Hub errors come in many types; the user needs the reason and the way out
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"could not download {spec.tag} ({reason}): {where_to_put(spec)}") from None
