"""Training compute of a recipe on CIFAR-10, counted by torch.utils.flop_counter.FlopCounterMode.

Run by hand:  PYTHONPATH=src .venv/bin/python bench/cifar_flops.py [--model inception_cifar_fast]
              [--recipe cifar-fast] [--epochs N] [--train-images 50000] [--eval-images 10000]
              [--time-steps 5 --batch 128 --threads 2]

Counts the FLOPs of one training step (forward, loss and backward, in train mode) at the recipe's batch size,
and of one evaluation forward pass (eval mode: with the model's test-time views when it has them), then multiplies by
the steps of the run: full batches per epoch x epochs, and one evaluation of the eval images per epoch.
FlopCounterMode counts 2 FLOPs per multiply-add of convolutions and matmuls (elementwise ops are not counted).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from common import count_flops, machine_header
from inceptionnet.engine.optim import build_optimizer
from inceptionnet.fast import optimize
from inceptionnet.models import create_model
from inceptionnet.recipes import Recipe, get_recipe
from inceptionnet.runtime import channels_last_default, set_threads, training_precision


def step_flops(model: torch.nn.Module, batch: int, size: int, label_smoothing: float) -> int:
    """FLOPs of one training step (forward + loss + backward) on a (batch, 3, size, size) batch."""
    images, targets = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    model.train()

    def step() -> None:
        F.cross_entropy(model(images), targets, label_smoothing=label_smoothing).backward()

    return count_flops(step)


def eval_flops(model: torch.nn.Module, batch: int, size: int) -> int:
    """FLOPs of one evaluation forward pass over (batch, 3, size, size) in eval mode."""
    model.eval()
    with torch.no_grad():
        return count_flops(lambda: model(torch.randn(batch, 3, size, size)))


def step_seconds(name: str, recipe: Recipe, batch: int, steps: int) -> list[float]:
    """Seconds of each of `steps` training steps (forward, loss, backward, optimizer) at `batch` images."""
    cpu = torch.device("cpu")
    channels_last = channels_last_default(cpu) if recipe.channels_last is None else recipe.channels_last
    model = optimize(create_model(name, num_classes=10), mode="train", channels_last=channels_last)
    optimizer = build_optimizer(model, recipe)
    images = torch.randn(batch, 3, 32, 32).contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    targets = torch.randint(0, 10, (batch,))
    bf16 = training_precision(recipe.precision, cpu).name == "bf16"
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images).float(), targets, label_smoothing=recipe.label_smoothing)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="inception_cifar_fast")
    parser.add_argument("--recipe", default="cifar-fast")
    parser.add_argument("--epochs", type=float, help="epochs (the recipe's otherwise)")
    parser.add_argument("--train-images", type=int, default=50_000)
    parser.add_argument("--eval-images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--time-steps", type=int, default=0, help="time this many training steps")
    parser.add_argument("--batch", type=int, help="batch of the timed steps (the recipe's otherwise)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    recipe = get_recipe(args.recipe)
    epochs = args.epochs or recipe.epochs
    model = create_model(args.model, num_classes=10)
    params = sum(p.numel() for p in model.parameters())
    per_step = step_flops(model, recipe.batch_size, args.size, recipe.label_smoothing)
    per_eval_image = eval_flops(model, 16, args.size) / 16
    steps = (args.train_images // recipe.batch_size) * epochs
    train_total = per_step * steps
    eval_total = per_eval_image * args.eval_images * epochs
    print(f"{args.model} with recipe {args.recipe}: {params / 1e6:.3f} M parameters, batch {recipe.batch_size}")
    print(f"  training step: {per_step / 1e9:.2f} GFLOP ({per_step / recipe.batch_size / 1e9:.4f} GFLOP an image, "
          f"forward + backward)")
    print(f"  evaluation: {per_eval_image / 1e9:.4f} GFLOP an image (eval mode forward)")
    print(f"  {epochs:g} epochs x {args.train_images // recipe.batch_size} steps: training "
          f"{train_total / 1e15:.3f} PFLOP, evaluation {eval_total / 1e15:.4f} PFLOP")
    if args.time_steps:
        batch = args.batch or recipe.batch_size
        median = statistics.median(step_seconds(args.model, recipe, batch, args.time_steps))
        rate = batch / median
        print(machine_header())
        print(f"  timed: median step {median:.3f}s at batch {batch} = {rate:.0f} images/s, "
              f"{per_step / recipe.batch_size * rate / 1e9:.1f} GFLOP/s; {epochs:g} epochs of {args.train_images} "
              f"images would train in {epochs * args.train_images / rate / 60:.1f} min")


if __name__ == "__main__":
    main()
