"""The precision policy (inceptionnet.runtime) and every registered model in bf16 on the CPU.

These tests hold on CPUs with and without native bf16: the policy is checked with `native_bf16` set
both ways, and the numeric checks use the tolerance of the dtype that actually ran. CI runs them again
under ONEDNN_MAX_CPU_ISA=AVX2 and with --assume-native-bf16, so both kinds of CPU are covered on either.
"""

import json
import time

import pytest
import torch
from torch import nn

from image_folders import make_image_folder
from inceptionnet import create_model, get_spec, list_models, runtime
from inceptionnet.errors import ConfigError
from inceptionnet.fast import optimize

pytestmark = pytest.mark.precision

def assert_close_for(dtype: torch.dtype, out: torch.Tensor, ref: torch.Tensor) -> None:
    """`out` within the tolerance of the precision `dtype` that computed it, relative to the logit scale."""
    name = next(k for k, v in runtime.DTYPES.items() if v == dtype)
    scale = float(ref.abs().max())
    assert float((out.float() - ref.float()).abs().max()) <= runtime.LOGIT_TOLERANCE[name] * scale


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU with native bf16 (AMX/AVX512-BF16), whatever this one has."""
    monkeypatch.setattr(runtime, "native_bf16", lambda device="cpu": torch.device(device).type == "cpu")


@pytest.fixture
def avx2_cpu(monkeypatch):
    """A CPU without native bf16 (AVX2 only), whatever this one has."""
    monkeypatch.setattr(runtime, "native_bf16", lambda device="cpu": False)


CPU = torch.device("cpu")
# On AMX CPUs (torch 2.14, oneDNN 3.12) the bf16 weight gradient of a strided 3x3 convolution over a 1x1 map
# comes back with non-finite values in most tries (reproduced with a bare nn.Conv2d). BN-Inception below 32 px
# feeds its reduction blocks such maps; from 32 px no registered model does.
BF16_MIN_SIZE = 32


def test_training_auto_is_bf16_with_native_units_and_fp32_without(bf16_cpu, monkeypatch):
    chosen = runtime.training_precision("auto", CPU)
    assert (chosen.name, chosen.dtype) == ("bf16", torch.bfloat16) and chosen.grad_scaler() is None
    assert "native bf16" in chosen.describe()
    monkeypatch.setattr(runtime, "native_bf16", lambda device="cpu": False)
    assert runtime.training_precision("auto", CPU).name == "fp32"


def test_explicit_precisions_are_kept_and_emulation_is_named(avx2_cpu):
    assert runtime.training_precision("fp32", CPU).name == "fp32"
    bf16 = runtime.training_precision("bf16", CPU)
    assert bf16.name == "bf16" and "emulated" in bf16.reason
    fp16 = runtime.training_precision("fp16", CPU)
    assert fp16.name == "fp16" and isinstance(fp16.grad_scaler(), torch.amp.GradScaler)
    with pytest.raises(ConfigError, match="--precision must be one of"):
        runtime.training_precision("int8", CPU)


def test_channels_last_where_it_measured_faster():
    assert runtime.channels_last_default(CPU)
    assert not runtime.channels_last_default(torch.device("meta"))


def test_optimize_stays_fp32_unless_asked_even_with_native_bf16(bf16_cpu):
    model = create_model("inception_cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    fast = optimize(model)
    assert fast.dtype == torch.float32
    with torch.no_grad():
        assert_close_for(torch.float32, fast(x), model(x))
    assert optimize(model, dtype=torch.bfloat16).dtype == torch.bfloat16


class _Timed(nn.Module):
    """Returns fixed logits after sleeping `seconds`: a model whose speed and answers a test sets."""

    def __init__(self, seconds: float, logits: torch.Tensor) -> None:
        super().__init__()
        self.seconds, self.logits = seconds, logits

    def forward(self, x):
        time.sleep(self.seconds)
        return self.logits


def _builder(fp32: nn.Module, bf16: nn.Module, built: list):
    def build(dtype):
        built.append(dtype)
        return bf16 if dtype == torch.bfloat16 else fp32
    return build


LOGITS = torch.tensor([[2.0, 1.0], [0.0, 3.0]])


def test_inference_auto_without_native_bf16_builds_fp32_only(avx2_cpu):
    built = []
    precision, model = runtime.choose_inference_precision(
        "auto", CPU, _builder(_Timed(0, LOGITS), _Timed(0, LOGITS), built), lambda: torch.zeros(2, 3, 4, 4))
    assert precision.name == "fp32" and built == [torch.float32]


def test_inference_auto_keeps_bf16_only_when_faster_and_agreeing(bf16_cpu):
    x = lambda: torch.zeros(2, 3, 4, 4)  # noqa: E731
    slow, fast_ = _Timed(0.02, LOGITS), _Timed(0.001, LOGITS)
    precision, model = runtime.choose_inference_precision("auto", CPU, _builder(slow, fast_, []), x)
    assert precision.name == "bf16" and model is fast_
    assert precision.measured["top1_agreement"] == 1.0 and precision.measured["fp32_ms"] > precision.measured[
        "bf16_ms"]
    # Faster but answering differently for one image: fp32.
    wrong = _Timed(0.001, LOGITS.flip(1))
    precision, model = runtime.choose_inference_precision("auto", CPU, _builder(slow, wrong, []), x)
    assert precision.name == "fp32" and model is slow and "agreement" in precision.reason
    # Agreeing but not faster: fp32.
    precision, _ = runtime.choose_inference_precision("auto", CPU, _builder(fast_, slow, []), x)
    assert precision.name == "fp32"


def _backend(name: str, images: int, timed: list, ms_per_image: float = 10.0, model: str = "googlenet_tv"):
    def eager_ms():
        timed.append(images)
        return ms_per_image
    return runtime.choose_inference_backend(runtime.Precision(name, "cpu"), model, images, eager_ms)


def test_compile_is_chosen_only_past_the_break_even_where_it_measured_a_gain(bf16_cpu):
    cost = runtime.COMPILE_COSTS[("cpu", "bf16")]["googlenet_tv"]
    break_even = cost.setup_s / (10.0 / 1e3 * (1 - 1 / cost.speedup))
    timed = []
    assert _backend("bf16", runtime.COMPILE_MIN_IMAGES - 1, timed)[0] == "eager" and timed == []  # not even timed
    below, why = _backend("bf16", max(runtime.COMPILE_MIN_IMAGES, int(0.9 * break_even)), timed)
    above, why_above = _backend("bf16", int(1.1 * break_even) + runtime.COMPILE_MIN_IMAGES, timed)
    assert below == "eager" and above == "compile" and f"{break_even:.0f}" in why_above
    # A slower eager graph saves more per image: the same job pays sooner.
    assert _backend("bf16", max(runtime.COMPILE_MIN_IMAGES, int(0.9 * break_even)), timed, ms_per_image=20.0)[0] \
        == "compile"
    # fp32, and a model without a measured gain: never compiled, never timed.
    timed.clear()
    assert _backend("fp32", 10**9, timed)[0] == "eager" and timed == []
    assert _backend("bf16", 10**9, timed, model="inception_cifar")[0] == "eager" and timed == []


def test_compile_is_never_chosen_without_native_bf16(avx2_cpu):
    timed = []
    backend, why = _backend("bf16", 10**9, timed)
    assert backend == "eager" and timed == [] and "not measured to pay" in why


def test_eval_compiles_a_long_job_and_reports_the_backend(bf16_cpu, monkeypatch, tmp_path):
    from inceptionnet import fast
    from inceptionnet.cli import main
    from test_eval_runner import random_checkpoint

    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    ckpt = random_checkpoint(tmp_path / "m.pt", sorted(p.name for p in data.iterdir()), 32)
    backends, optimize = [], fast.optimize

    def recording(model, *args, **kwargs):
        backends.append(kwargs.get("backend", "auto"))
        return optimize(model, *args, **{**kwargs, "backend": "eager"})  # the choice is checked, not compiling

    monkeypatch.setattr(fast, "optimize", recording)
    monkeypatch.setattr(runtime, "COMPILE_MIN_IMAGES", 1)
    free = {"inception_cifar": runtime.CompileCost(2.0, 0.0)}
    monkeypatch.setattr(runtime, "COMPILE_COSTS", {("cpu", "bf16"): free, ("cpu", "fp32"): free})
    assert main(["eval", str(ckpt), "--data", str(data), "--out", str(tmp_path / "e"), "--quiet"]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert backends[-1] == "compile" and report["precision"][0]["backend"] == "compile"
    assert "break-even" in report["precision"][0]["backend_reason"]


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_in_bf16_autocast_and_infers_in_bf16(name):
    torch.manual_seed(0)
    size = max(get_spec(name).min_input_size, BF16_MIN_SIZE)
    model = create_model(name, num_classes=10, aux_logits=False)
    x, y = torch.randn(2, 3, size, size), torch.tensor([1, 7])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]  # frozen ones (a whitening stem) have none
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    model.eval()
    fast = optimize(model, dtype=torch.bfloat16)
    with torch.no_grad():
        ref, out = model(x), fast(x)
    assert out.dtype == torch.float32 and out.shape == (2, 10)
    assert_close_for(torch.bfloat16, out, ref)


def test_fp16_autocast_trains_on_the_cpu():
    model = create_model("googlenet", num_classes=4, aux_logits=False)  # LRN: computed in fp32 inside
    with torch.autocast("cpu", dtype=torch.float16):
        loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)).float(), torch.tensor([0, 3]))
    loss.backward()
    assert torch.isfinite(loss) and all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())


@pytest.mark.parametrize("native", [True, False])
def test_training_run_reports_the_precision_that_ran(native, tmp_path, monkeypatch):
    from inceptionnet import train

    monkeypatch.setattr(runtime, "native_bf16", lambda device="cpu": native)
    data = make_image_folder(tmp_path / "data", per_class=4)
    report = train("inception_cifar", data=str(data), epochs=1, batch_size=4, out=str(tmp_path / "run"),
                   quiet=True, device="cpu")
    expected = "bf16" if native else "fp32"
    assert report["precision"] == expected
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == expected
    assert f"{expected} (auto" in (tmp_path / "run" / "log.txt").read_text()
