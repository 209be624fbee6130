"""build_loader over datasets that batch-fetch (torch Subset defines __getitems__), its seeded draws, and its
workers under Ctrl-C."""

import multiprocessing
import os
import signal
import time

import torch
from torch.utils.data import Subset, TensorDataset

from inceptionnet.data.loaders import build_loader


def test_loader_over_a_subset_yields_the_chosen_items():
    images = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    dataset = Subset(TensorDataset(images, torch.arange(10)), [1, 3, 5, 7])
    loader = build_loader(dataset, batch_size=2, shuffle=False, workers=0, seed=0)
    targets = torch.cat([batch.targets for batch in loader])
    assert targets.tolist() == [1, 3, 5, 7]
    assert torch.equal(torch.cat([batch.images for batch in loader])[:, 0, 0, 0], targets.float())


class RandomItems(torch.utils.data.Dataset):
    """Item i is a draw from torch's generator (as an augmentation is), tagged with i."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        return torch.rand(3, 1, 1), index


def test_an_items_draws_depend_on_seed_epoch_and_index_only_and_leave_the_callers_generator_alone():
    def epoch_images(workers: int, epoch: int) -> torch.Tensor:
        loader = build_loader(RandomItems(), batch_size=3, shuffle=True, workers=workers, seed=7)
        loader.set_epoch(epoch)
        batches = list(loader)
        order = torch.cat([b.targets for b in batches]).argsort()
        return torch.cat([b.images for b in batches])[order]

    torch.manual_seed(123)
    expected_next = torch.rand(4)
    torch.manual_seed(123)
    in_main = epoch_images(workers=0, epoch=1)
    assert torch.equal(torch.rand(4), expected_next)  # loading in the main process left dropout's draws alone
    assert torch.equal(in_main, epoch_images(workers=2, epoch=1))
    assert not torch.equal(in_main, epoch_images(workers=0, epoch=2))


def test_loader_workers_survive_a_ctrl_c_sent_to_them_and_keep_delivering():
    loader = build_loader(RandomItems(), batch_size=2, shuffle=False, workers=1, seed=0)
    batches = iter(loader)
    first = next(batches)
    workers = multiprocessing.active_children()
    assert workers, "the loader should have started a worker process"
    for worker in workers:  # what a terminal's Ctrl-C does to the process group's other members
        os.kill(worker.pid, signal.SIGINT)
    time.sleep(0.5)
    assert all(worker.is_alive() for worker in workers)
    targets = torch.cat([first.targets, *(batch.targets for batch in batches)])
    assert targets.tolist() == list(range(8))
