"""Distributed data-parallel training with `torchrun` + DistributedDataParallel (one process per device).

Everything here also works in a plain single process (no torchrun): the context then says world size 1,
collectives are no-ops and `wrap_ddp` returns the model unchanged, so the training loop has one code path.

Conventions the engine follows:
- `--batch-size` is the global batch; each of the N processes loads `batch_size / N` images per step.
  The training sampler hands rank r the indices r, r+N, r+2N... of one seeded permutation, so the N
  per-rank batches of a step together are exactly the batch a single process would draw.
- The learning rate is scaled linearly with the global batch relative to the recipe's reference batch
  (Goyal et al. 2017), unless disabled; `plan_batch_and_lr` returns the line that states it in the log.
- Only rank 0 prints, writes the run folder, checkpoints and plots; every rank takes part in collectives.
- Validation splits the set across ranks without padding or duplicates (`EvalSampler`), and per-rank sums
  (correct, loss, count) are all-reduced, so every image is counted exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..errors import ConfigError
from ..runtime import mix_seed, resolve_device

# A rank that stops answering (crashed, killed, stuck) makes the others' collectives fail after this many
# seconds instead of hanging forever. torchrun's agent also tears the group down when a worker exits.
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job, read from the variables torchrun sets.

    rank: global rank (0..world_size-1); world_size: number of processes; local_rank: rank on this node
    (the GPU index it uses); local_world_size: processes on this node; master_addr/master_port: rendezvous
    of the process group; node_rank: index of this node (torchrun's GROUP_RANK).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0
    master_addr: str = ""
    master_port: int = 0

    @classmethod
    def from_env(cls, env: Any = None) -> DistContext:
        """Read RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT (defaults:
        a single process)."""
        env = os.environ if env is None else env

        def number(name: str, default: int) -> int:
            value = env.get(name, "")
            try:
                return int(value) if value != "" else default
            except ValueError:
                raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None

        ctx = cls(rank=number("RANK", 0), world_size=number("WORLD_SIZE", 1), local_rank=number("LOCAL_RANK", 0),
                  local_world_size=number("LOCAL_WORLD_SIZE", 1), node_rank=number("GROUP_RANK", 0),
                  master_addr=env.get("MASTER_ADDR", ""), master_port=number("MASTER_PORT", 0))
        if not 0 <= ctx.rank < ctx.world_size:
            raise ConfigError(f"RANK={ctx.rank} is outside WORLD_SIZE={ctx.world_size}")
        return ctx

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs, writes files and saves checkpoints."""
        return self.rank == 0

    def describe(self, device: torch.device) -> str:
        """One log line: `distributed: 4 processes on 2 nodes, backend nccl, this is rank 0 on cuda:0`."""
        if not self.distributed:
            return f"single process on {device}"
        nodes = max(1, self.world_size // max(1, self.local_world_size))
        return (f"distributed: {self.world_size} processes on {nodes} node{'s' * (nodes > 1)}, backend "
                f"{_backend_for(device)}, rank {self.rank} on {device}")


def _backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device: str | torch.device | None = "auto",
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[DistContext, torch.device]:
    """Set up this process from the torchrun environment and return (context, device).

    With WORLD_SIZE > 1 it joins the process group: NCCL on CUDA, gloo on CPU, chosen from the device;
    collectives that wait longer than `timeout_s` seconds fail (so a dead rank ends the job rather than
    hanging it). Without torchrun it returns a single-process context and does nothing else.
    """
    ctx = DistContext.from_env()
    dev = resolve_device(device, ctx.local_rank if ctx.distributed else None)
    if not ctx.distributed or dist.is_initialized():
        return ctx, dev
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        # Abort the NCCL communicator (and so the process) on a timeout instead of hanging in a kernel.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    dist.init_process_group(backend=_backend_for(dev), rank=ctx.rank, world_size=ctx.world_size,
                            timeout=timedelta(seconds=timeout_s))
    return ctx, dev


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a run; safe when none was set up)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    """Number of processes in the job (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on rank 0 or in a single process."""
    return get_rank() == 0


def _collective_device() -> torch.device:
    if _active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if not _active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_sum(values: Tensor | Sequence[float]) -> Tensor:
    """Sum `values` over all ranks and return the sum (every rank gets it; the input is not modified).

    `values` is a Tensor of any shape, or a sequence of numbers (made a float64 tensor on the backend's
    device). Sum counts such as (correct, loss_sum, n_images) and divide afterwards, so ranks that saw
    different numbers of images are weighted correctly.
    """
    if isinstance(values, Tensor):
        out = values.detach().clone()
    else:
        out = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    if _active():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def on_every_rank(ok: bool) -> bool:
    """Whether `ok` holds on every rank. Under DDP all ranks must skip a batch together (empty or with a
    non-finite loss on any rank): the ranks that ran backward would otherwise wait for the gradients of
    one that skipped, and their collectives would no longer pair up."""
    if not _active():
        return ok
    return bool(all_reduce_sum([float(not ok)])[0] == 0)


def all_gather_objects(obj: Any) -> list[Any]:
    """The `obj` of every rank, in rank order (picklable objects, e.g. lists of skipped files)."""
    if not _active():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (e.g. a run folder name chosen on rank 0)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def rank_seed(seed: int, rank: int | None = None) -> int:
    """A per-rank seed for augmentation and dropout, so ranks do not draw identical random crops.

    The data order must NOT use it: the training sampler takes the shared `seed` on every rank.
    """
    rank = get_rank() if rank is None else rank
    return seed if rank == 0 else mix_seed(seed, rank)


# ---- model wrapping ---------------------------------------------------------------------------------------
def wrap_ddp(model: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """Wrap `model` (already on `device`) in DistributedDataParallel when running distributed.

    No `find_unused_parameters`: a model built with aux heads must be called with `with_aux=True` in
    training (and one built without has no aux parameters), so every parameter gets a gradient each step.
    `sync_bn` turns BatchNorm layers into SyncBatchNorm (statistics over the global batch; CUDA only); the
    converted layers share the original parameters and buffers, so an optimizer built before still applies.
    In a single process the model is returned unchanged (and `sync_bn` has nothing to do).
    """
    if not _active():
        return model
    if sync_bn and device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm does not run on the CPU)")
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False)


def grad_sync(model: nn.Module, sync: bool) -> AbstractContextManager:
    """Context for a forward+backward: with `sync=False` a DDP model keeps its gradients local (the
    micro-batches of gradient accumulation before the last), saving one all-reduce per micro-batch."""
    if not sync and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return nullcontext()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and/or torch.compile wrappers (for state_dict, evaluation and export)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


# ---- samplers ---------------------------------------------------------------------------------------------
class TrainSampler(DistributedSampler):
    """Training order: one permutation per epoch seeded by (seed, epoch), shared by all ranks; rank r takes
    every world_size-th index from r. The tail is padded by repeating the first indices so every rank
    gets the same number of samples (DDP steps must match).

    `set_epoch(epoch, skip)` also drops this rank's first `skip` indices from the next pass over `epoch`, to
    resume mid-epoch after `skip = steps_done * per_rank_batch` samples; a loader wrapper that re-announces
    the epoch with `set_epoch(epoch)` keeps that skip. Works without a process group (world size 1).
    """

    def __init__(self, dataset: Dataset, seed: int, shuffle: bool = True, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=get_world_size() if num_replicas is None else num_replicas,
                         rank=get_rank() if rank is None else rank, shuffle=shuffle, seed=seed, drop_last=False)
        self._resume_at: tuple[int, int] | None = None  # (epoch, skip) for the next pass over that epoch

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the permutation of `epoch`; `skip` > 0 drops the first `skip` indices of the next pass."""
        super().set_epoch(epoch)
        if not 0 <= skip <= self.num_samples:
            raise ValueError(f"cannot skip {skip} of {self.num_samples} samples")
        if skip:
            self._resume_at = (epoch, skip)

    @property
    def skip(self) -> int:
        """Indices the next pass leaves out (0 unless resuming inside the current epoch)."""
        return self._resume_at[1] if self._resume_at and self._resume_at[0] == self.epoch else 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())[self.skip:]
        self._resume_at = None  # a resume skips once; the next pass over any epoch is whole
        return iter(indices)

    def __len__(self) -> int:
        return self.num_samples - self.skip


class EvalSampler(Sampler[int]):
    """Evaluation split without padding or duplicates: rank r takes indices r, r+N, r+2N... in order.

    Ranks may get one sample more or less than others, so evaluate with the unwrapped model (no DDP
    collectives per step) and all-reduce the summed metrics afterwards.
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.size = len(dataset)  # type: ignore[arg-type]
        self.num_replicas = get_world_size() if num_replicas is None else num_replicas
        self.rank = get_rank() if rank is None else rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))


# ---- batch size and learning rate -------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchPlan:
    """How the global batch splits over processes and which learning rate it gets.

    global_batch: images per optimizer step over all ranks; per_rank_batch: images per step per process;
    lr: the learning rate used; base_lr: the lr the recipe/user gave for `reference_batch`; note: log line.
    """

    global_batch: int
    per_rank_batch: int
    lr: float
    base_lr: float
    reference_batch: int
    note: str


def plan_batch_and_lr(global_batch: int, world_size: int, base_lr: float, reference_batch: int | None = None,
                      scale_lr: bool = True) -> BatchPlan:
    """Split `global_batch` over `world_size` processes and scale the learning rate.

    Linear scaling rule: lr = base_lr * global_batch / reference_batch, where `reference_batch` is the batch
    `base_lr` was tuned for (the recipe's batch size; None means `global_batch`, i.e. no change). With
    `scale_lr=False` the lr stays `base_lr`. Raises ConfigError when the batch does not split evenly.
    """
    if global_batch < world_size or global_batch % world_size:
        raise ConfigError(f"--batch-size {global_batch} (the global batch) must be a multiple of the "
                          f"{world_size} processes")
    reference = reference_batch or global_batch
    factor = global_batch / reference if scale_lr else 1.0
    lr = base_lr * factor
    per_rank = global_batch // world_size
    split = f"{world_size} processes x {per_rank}" if world_size > 1 else "1 process"
    if not scale_lr:
        lr_note = f"lr {lr:.3g} (linear scaling off)"
    elif reference == global_batch:
        lr_note = f"lr {lr:.3g} (tuned for batch {reference}, no scaling needed)"
    else:
        lr_note = f"lr {lr:.3g} = {base_lr:.3g} x {global_batch}/{reference} (linear scaling rule)"
    note = f"global batch {global_batch} = {split}; {lr_note}"
    return BatchPlan(global_batch, per_rank, lr, base_lr, reference, note)
