"""Weight files planted by tests in temporary torch.hub and Hugging Face caches, under the names those
libraries use (imported by test modules, not collected)."""

import dataclasses
import hashlib
import os

import pytest
import torch
from safetensors.torch import save_file

from inceptionnet.weights import get_weights, registry


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    """Empty torch.hub and Hugging Face caches, downloads off."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("INCEPTIONNET_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plant_torch_hub(tmp_path, monkeypatch, tag: str, state: dict) -> registry.WeightSpec:
    """Save `state` as torch.hub would cache `tag`'s file, renamed to carry the file's real hash prefix
    (a random state cannot match the published hash); the registry record is pointed at that name."""
    spec = get_weights(tag)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / "scratch.pth"
    torch.save(state, scratch)
    stem = spec.file_name.rsplit("-", 1)[0]
    url = spec.url.rsplit("/", 1)[0] + f"/{stem}-{sha256(scratch)[:8]}.pth"
    planted = dataclasses.replace(spec, url=url)
    scratch.rename(folder / planted.file_name)
    monkeypatch.setitem(registry._BY_TAG, tag, planted)
    return planted


def plant_hf_hub(tmp_path, hub_id: str, state: dict, blob_name: str | None = None):
    """Save `state` as huggingface_hub caches `model.safetensors` of `hub_id`: a blob named by its SHA-256,
    a snapshot link to it and refs/main."""
    repo = tmp_path / "hf" / "hub" / ("models--" + hub_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    scratch = repo / "blobs" / "scratch"
    save_file({k: v.contiguous() for k, v in state.items()}, str(scratch))
    blob = repo / "blobs" / (blob_name or sha256(scratch))
    scratch.rename(blob)
    revision = "0" * 40
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "snapshots" / revision / "model.safetensors").symlink_to(os.path.relpath(blob, repo / "snapshots" /
                                                                                       revision))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return blob
