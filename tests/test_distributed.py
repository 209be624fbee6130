"""Distributed helpers in one process: context from the environment, samplers, batch and lr plan."""

import pytest
import torch
from torch import nn

from inceptionnet.engine.distributed import (
    DistContext,
    EvalSampler,
    TrainSampler,
    all_gather_objects,
    all_reduce_sum,
    broadcast_object,
    init_distributed,
    plan_batch_and_lr,
    rank_seed,
    unwrap,
    wrap_ddp,
)
from inceptionnet.errors import ConfigError


def test_context_from_torchrun_variables():
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1",
           "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    ctx = DistContext.from_env(env)
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.node_rank, ctx.master_port) == (5, 8, 1, 1, 29500)
    assert ctx.distributed and not ctx.is_main
    assert "8 processes on 2 nodes" in ctx.describe(torch.device("cuda", 1))
    single = DistContext.from_env({})
    assert not single.distributed and single.is_main and single.world_size == 1


@pytest.mark.parametrize("env, match", [({"RANK": "2", "WORLD_SIZE": "2"}, "outside WORLD_SIZE"),
                                        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'")])
def test_bad_environment_is_a_config_error(env, match):
    with pytest.raises(ConfigError, match=match):
        DistContext.from_env(env)


def test_single_process_needs_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx, device = init_distributed("cpu")
    assert ctx.world_size == 1 and device == torch.device("cpu")
    model = nn.Linear(2, 2)
    assert wrap_ddp(model, device) is model and unwrap(model) is model
    assert all_reduce_sum([1.0, 2.0]).tolist() == [1.0, 2.0]
    assert all_gather_objects("x") == ["x"] and broadcast_object(3) == 3
    assert wrap_ddp(model, device, sync_bn=True) is model, "one process has nothing to synchronise"


def test_a_bad_device_is_a_config_error():
    with pytest.raises(ConfigError, match="--device 'gpu7'"):
        init_distributed("gpu7")


@pytest.mark.parametrize("size, world", [(23, 2), (24, 3), (5, 4)])
def test_rank_shares_of_a_step_form_the_single_process_batch(size, world):
    per_rank = 2
    single = list(TrainSampler(range(size), seed=7, num_replicas=1, rank=0))
    shards = [list(TrainSampler(range(size), seed=7, num_replicas=world, rank=r)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1, "every rank must take the same number of steps"
    for step in range(len(shards[0]) // per_rank):
        together = sorted(i for s in shards for i in s[step * per_rank:(step + 1) * per_rank])
        global_batch = per_rank * world
        expected = (single * 2)[step * global_batch:(step + 1) * global_batch]  # padding repeats the start
        assert together == sorted(expected)


def test_train_sampler_reshuffles_per_epoch_and_resumes_mid_epoch():
    sampler = TrainSampler(range(20), seed=1, num_replicas=2, rank=1)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch0 != epoch1 and sorted(epoch0) != sorted(epoch1)
    sampler.set_epoch(1, skip=4)
    assert len(sampler) == 6
    sampler.set_epoch(1)  # a loader wrapper announcing the epoch again keeps the resume position
    assert list(sampler) == epoch1[4:]
    assert list(sampler) == epoch1 and len(sampler) == 10, "only the resumed pass is shortened"
    with pytest.raises(ValueError):
        sampler.set_epoch(1, skip=11)


@pytest.mark.parametrize("size, world", [(13, 2), (13, 4), (3, 4)])
def test_eval_sampler_counts_every_image_once(size, world):
    shards = [list(EvalSampler(range(size), num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(size))
    assert [len(EvalSampler(range(size), world, r)) for r in range(world)] == [len(s) for s in shards]


def test_batch_plan_and_linear_lr_scaling():
    plan = plan_batch_and_lr(256, 4, base_lr=0.1, reference_batch=32)
    assert (plan.per_rank_batch, plan.lr) == (64, pytest.approx(0.8))
    assert "global batch 256 = 4 processes x 64" in plan.note and "linear scaling rule" in plan.note
    same = plan_batch_and_lr(32, 2, base_lr=0.1, reference_batch=32)
    assert same.lr == pytest.approx(0.1) and same.per_rank_batch == 16
    off = plan_batch_and_lr(256, 4, base_lr=0.1, reference_batch=32, scale_lr=False)
    assert off.lr == pytest.approx(0.1) and "scaling off" in off.note
    with pytest.raises(ConfigError, match="must be a multiple of the 3 processes"):
        plan_batch_and_lr(32, 3, base_lr=0.1)


def test_rank_seeds_differ_per_rank():
    assert len({rank_seed(0, r) for r in range(8)}) == 8 and rank_seed(5, 0) == 5
