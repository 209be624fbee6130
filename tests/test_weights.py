"""Reading, converting and writing weights through the public functions, on real files."""

import pytest
import torch
from torch import nn

from inceptionnet import WeightsError, fileio, load_weights, save_weights
from inceptionnet.engine.checkpoint import load_checkpoint, save_checkpoint
from inceptionnet.fileio import atomic_copy, atomic_write
from inceptionnet.models.base import InceptionClassifier


class Tiny(InceptionClassifier):
    classifier_names = ("fc", "aux.fc")
    aux_head_names = ("aux",)

    def __init__(self, aux_logits=True):
        super().__init__(num_classes=3, in_chans=3, min_input_size=4, aux_logits=aux_logits)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)
        self.aux = nn.Sequential() if aux_logits else None
        if aux_logits:
            self.aux.add_module("fc", nn.Linear(4, 3))

    def forward_head(self, x, with_aux):
        f = self.conv(x).mean((2, 3))
        return self.fc(f), ([self.aux.fc(f)] if with_aux else [])


def test_round_trip_pt_and_safetensors(tmp_path):
    src = Tiny()
    for name in ("w.pt", "w.safetensors"):
        save_weights(src, tmp_path / name)
        dst = Tiny()
        report = load_weights(dst, tmp_path / name)
        assert report.ok
        for k, v in src.state_dict().items():
            assert torch.equal(v, dst.state_dict()[k]), k


def test_file_url_and_wrapped_ddp_checkpoint(tmp_path):
    src = Tiny()
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "c.pth")
    dst = Tiny()
    load_weights(dst, (tmp_path / "c.pth").as_uri())
    assert torch.equal(dst.fc.weight, src.fc.weight)


def test_mismatch_lists_missing_unexpected_and_misshaped(tmp_path):
    sd = Tiny().state_dict()
    sd.pop("fc.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["conv.weight"] = torch.zeros(4, 3, 5, 5)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(WeightsError) as e:
        load_weights(Tiny(), tmp_path / "bad.pt")
    msg = str(e.value)
    assert "fc.bias" in msg and "extra.weight" in msg and "conv.weight (4, 3, 5, 5) vs (4, 3, 3, 3)" in msg


def test_non_strict_loads_what_fits(tmp_path):
    sd = Tiny().state_dict()
    sd.pop("fc.bias")
    torch.save(sd, tmp_path / "part.pt")
    dst = Tiny()
    with pytest.warns(UserWarning, match="partial load"):
        report = load_weights(dst, tmp_path / "part.pt", strict=False)
    assert report.missing == ["fc.bias"]
    assert torch.equal(dst.conv.weight, sd["conv.weight"])


def test_aux_heads_dropped_kept_and_warned(tmp_path):
    with_aux = Tiny(aux_logits=True)
    save_weights(with_aux, tmp_path / "aux.pt")
    no_aux = Tiny(aux_logits=False)
    assert load_weights(no_aux, tmp_path / "aux.pt").ok  # aux weights skipped for a model without heads
    save_weights(no_aux, tmp_path / "noaux.pt")
    with pytest.warns(UserWarning, match="aux head"):
        report = load_weights(Tiny(aux_logits=True), tmp_path / "noaux.pt")
    assert report.random_aux == ["aux"]
    fresh = Tiny(aux_logits=True)
    before = fresh.aux.fc.weight.clone()
    with pytest.warns(UserWarning, match="aux head"):
        load_weights(fresh, tmp_path / "aux.pt", aux="drop")
    assert torch.equal(fresh.aux.fc.weight, before)


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        load_weights(Tiny(), tmp_path / "junk.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_weights(Tiny(), tmp_path / "nope.pt")


def checkpoint_state(step: int) -> dict:
    """A minimal training checkpoint: model metadata, no weights, a step count."""
    return {"model_name": "inception_cifar", "model_kwargs": {"num_classes": 2}, "class_names": ["a", "b"],
            "preprocess": {}, "model": {}, "step": step}


def test_atomic_write_keeps_old_file_when_writer_dies(tmp_path):
    target = tmp_path / "last.pt"
    save_checkpoint(target, checkpoint_state(1))

    def dies(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies)
    assert load_checkpoint(target)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("can_link", [True, False])
def test_atomic_copy_stays_independent_of_its_source(tmp_path, monkeypatch, can_link):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_checkpoint(last, checkpoint_state(1))
    if not can_link:  # a filesystem without hard links: the bytes are copied
        monkeypatch.setattr(fileio.os, "link", lambda *a: (_ for _ in ()).throw(OSError("no links here")))
    atomic_copy(last, best)
    assert (best.stat().st_ino == last.stat().st_ino) == can_link
    save_checkpoint(last, checkpoint_state(2))  # replaced by rename: best keeps the old checkpoint
    assert load_checkpoint(best)["step"] == 1 and load_checkpoint(last)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
