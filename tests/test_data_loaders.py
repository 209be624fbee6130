"""build_loader over datasets that batch-fetch (torch Subset defines __getitems__)."""

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
