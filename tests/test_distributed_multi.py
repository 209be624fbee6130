"""Two CPU processes (gloo) under torchrun: DDP equals one process, evaluation counts each image once,
and a dead rank takes the job down.

This file is also the worker script torchrun starts (`python tests/test_distributed_multi.py ROLE OUT`).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inceptionnet.engine import distributed as D
from inceptionnet.errors import ConfigError

STEPS, GLOBAL_BATCH, VAL_SIZE = 3, 8, 13  # odd validation size: padding would show up in the count


class TinyNet(nn.Module):
    """Conv + BN + linear with an optional aux head, called like an InceptionClassifier.

    BN runs in eval mode (frozen statistics): in train mode each rank would normalise with the statistics
    of its half batch, so 2 x 4 images would not equal 1 x 8 images (SyncBatchNorm fixes that, CUDA only).
    """

    def __init__(self, aux: bool) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, 4)
        self.aux = nn.Linear(8, 4) if aux else None

    def forward(self, x, with_aux=False):
        f = self.features(x)
        if with_aux:
            return self.fc(f), (self.aux(f),) if self.aux is not None else ()
        return self.fc(f)


def data():
    g = torch.Generator().manual_seed(3)
    train = TensorDataset(torch.randn(STEPS * GLOBAL_BATCH + 3, 3, 8, 8, generator=g),
                          torch.randint(0, 4, (STEPS * GLOBAL_BATCH + 3,), generator=g))
    val = TensorDataset(torch.randn(VAL_SIZE, 3, 8, 8, generator=g), torch.randint(0, 4, (VAL_SIZE,), generator=g))
    return train, val


def train_and_evaluate(aux: bool, accum: int) -> tuple[dict, list[float]]:
    """K SGD steps on the global batch split over the ranks (each rank's share in `accum` micro-batches),
    then distributed evaluation. Before training, one forward pass is thrown away, as the engine does for
    a batch whose loss is non-finite on some rank (all ranks then skip its backward together).

    Returns (state_dict, [correct, loss_sum, count] all-reduced over the validation set)."""
    torch.manual_seed(0)
    model = TinyNet(aux)
    model.train()
    model.features[1].eval()
    device = torch.device("cpu")
    ddp = D.wrap_ddp(model, device)
    plan = D.plan_batch_and_lr(GLOBAL_BATCH, D.get_world_size(), base_lr=0.1, reference_batch=GLOBAL_BATCH)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=plan.lr, momentum=0.9)
    train, val = data()
    sampler = D.TrainSampler(train, seed=11)
    sampler.set_epoch(0)
    batches = iter(DataLoader(train, batch_size=plan.per_rank_batch // accum, sampler=sampler))
    ddp(train[:2][0], with_aux=True)  # the skipped batch: forward only
    for _ in range(STEPS):
        for micro in range(accum):
            x, y = next(batches)
            with D.grad_sync(ddp, sync=micro == accum - 1):
                logits, aux_logits = ddp(x, with_aux=True)
                loss = nn.functional.cross_entropy(logits, y) + sum(0.3 * nn.functional.cross_entropy(a, y)
                                                                    for a in aux_logits)
                (loss / accum).backward()
        optimizer.step()
        optimizer.zero_grad()
    net = D.unwrap(ddp).eval()
    correct = loss_sum = count = 0.0
    with torch.no_grad():
        for x, y in DataLoader(val, batch_size=4, sampler=D.EvalSampler(val)):
            logits = net(x)
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            count += len(y)
    return net.state_dict(), D.all_reduce_sum([correct, loss_sum, count]).tolist()


CASES = [(True, 1), (False, 1), (True, 2)]  # (aux heads, micro-batches per step)


def worker(role: str, out: Path, timeout_s: float) -> None:
    ctx, _ = D.init_distributed("cpu", timeout_s=timeout_s)
    assert ctx.world_size == 2, ctx
    if role == "equal":
        for aux, accum in CASES:
            state, metrics = train_and_evaluate(aux, accum)
            if ctx.is_main:
                torch.save({"state": state, "metrics": metrics}, out / f"ddp_aux{int(aux)}_accum{accum}.pt")
        try:
            D.wrap_ddp(TinyNet(False), torch.device("cpu"), sync_bn=True)
        except ConfigError as e:
            (out / "sync_bn_error.txt").write_text(str(e))
    elif role == "hang":
        (out / f"rank{ctx.rank}.pid").write_text(str(os.getpid()))
        deadline = time.time() + 120
        while time.time() < deadline:  # keeps talking to the other rank until it disappears
            D.all_reduce_sum([1.0])
            time.sleep(0.05)
    D.cleanup_distributed()


def torchrun(role: str, out: Path, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, role, str(out)]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("aux, accum", CASES, ids=["aux", "no-aux", "aux-accumulate"])
def test_two_processes_equal_one_process(tmp_path_factory, aux, accum):
    out = tmp_path_factory.getbasetemp() / "ddp_equal"
    if not out.exists():
        out.mkdir()
        proc = torchrun("equal", out)
        log, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, log
    ddp = torch.load(out / f"ddp_aux{int(aux)}_accum{accum}.pt", weights_only=True)
    state, metrics = train_and_evaluate(aux, accum=1)  # the same steps in one process, whole batches
    for name, value in state.items():
        assert torch.allclose(ddp["state"][name], value, atol=1e-5, rtol=0), name
    assert any(not torch.equal(v, TinyNet(aux).state_dict()[k]) for k, v in state.items() if "weight" in k)
    assert ddp["metrics"][2] == VAL_SIZE, "each validation image must be counted exactly once"
    assert ddp["metrics"] == pytest.approx(metrics, abs=1e-4)
    assert set(state) == set(ddp["state"]) and any(k.startswith("aux.") for k in state) == aux
    assert "--sync-bn needs CUDA" in (out / "sync_bn_error.txt").read_text()


def wait_for(paths: list[Path], proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while not all(p.exists() and p.read_text() for p in paths):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, "workers did not start"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_rank_ends_the_torchrun_job(tmp_path):
    proc = torchrun("hang", tmp_path)
    try:
        wait_for([tmp_path / "rank0.pid", tmp_path / "rank1.pid"], proc, 60)
        os.kill(int((tmp_path / "rank1.pid").read_text()), signal.SIGKILL)
        killed = time.time()
        log, _ = proc.communicate(timeout=60)
        assert time.time() - killed < 60
    finally:
        proc.kill()
    assert proc.returncode != 0, log


def plain_processes(out: Path, timeout_s: float) -> list[subprocess.Popen]:
    """Two workers started by hand (no torchrun agent that could tear them down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, __file__, "hang", str(out), str(timeout_s)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    wait_for([out / "rank0.pid", out / "rank1.pid"], procs[0], 60)
    return procs


@pytest.mark.slow
@pytest.mark.parametrize("failure", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stuck"])
def test_a_dead_or_stuck_rank_ends_the_others_without_an_agent(tmp_path, failure):
    """A killed peer breaks the connection at once; a stuck one (SIGSTOP) is caught by the collective
    timeout (10 s here, 60 s by default): either way the survivor exits non-zero instead of hanging."""
    procs = plain_processes(tmp_path, timeout_s=10)
    try:
        os.kill(procs[1].pid, failure)
        stopped = time.time()
        log, _ = procs[0].communicate(timeout=60)
        elapsed = time.time() - stopped
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode != 0, log
    assert elapsed < (30 if failure == signal.SIGKILL else 40), elapsed  # generous: CI machines are shared


if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 30.0)
