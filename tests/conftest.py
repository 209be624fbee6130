import os

import pytest
import torch

# Tests never download: published weights come only from files a test plants in its own caches.
os.environ["INCEPTIONNET_OFFLINE"] = "1"

# Two cores here and in CI: keep torch from oversubscribing them when tests run alongside workers.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def optimize_calls(monkeypatch):
    """The example input shapes `inceptionnet.fast.optimize` is called with (it still runs)."""
    from inceptionnet import fast

    calls = []
    optimize = fast.optimize

    def recording_optimize(model, *args, **kwargs):
        calls.append(tuple(kwargs["example_input"].shape))
        return optimize(model, *args, **kwargs)

    monkeypatch.setattr(fast, "optimize", recording_optimize)
    return calls


@pytest.fixture
def one_thread():
    """One torch thread for the test: on two cores shared with other jobs, two spin-waiting OpenMP threads make
    steps up to 10x slower and their times erratic (timing-sensitive and long tests use this)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_addoption(parser):
    parser.addoption("--assume-native-bf16", action="store_true",
                     help="run as if this CPU had native bf16 units (AMX/AVX512-BF16): the `auto` precision "
                          "policy then picks bf16, which runs emulated where the CPU lacks them")


@pytest.fixture(autouse=True)
def _native_bf16(request, monkeypatch):
    """Under --assume-native-bf16, `inceptionnet.runtime.native_bf16` answers True for the CPU."""
    if request.config.getoption("--assume-native-bf16"):
        from inceptionnet import runtime

        real = runtime.native_bf16
        monkeypatch.setattr(runtime, "native_bf16", lambda device="cpu": torch.device(device).type == "cpu"
                            or real(device))
