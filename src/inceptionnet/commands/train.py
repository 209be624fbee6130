"""`inceptionnet train`: train a model on an image folder, CIFAR-10 or the embedded synthetic set."""

from __future__ import annotations

import argparse
import os

from ..recipes import parse_set_options, recipe_names
from ..runtime import PRECISIONS


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The options shared by `train` and `demo`; every default is None so only what the user gives is passed."""
    p.add_argument("--epochs", type=int, help="number of epochs (recipe default otherwise)")
    p.add_argument("--batch-size", type=int, help="global batch size (recipe default otherwise)")
    p.add_argument("--img-size", type=int, help="training and validation input size (model default otherwise)")
    p.add_argument("--lr", type=float, help="base learning rate (recipe default, scaled to the batch, otherwise)")
    p.add_argument("--workers", type=int, help="data loading worker processes (default 0: in the main process)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="auto (default): bf16 autocast where the device has native bf16 (AMX/AVX512-BF16 CPUs, "
                        "CUDA), fp16 with loss scaling on older GPUs, fp32 elsewhere")
    p.add_argument("--seed", type=int, help="seeds Python, NumPy, torch and the data order (default 0)")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic kernels: a CPU run repeats bit for bit")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bars or epoch lines")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="override any recipe field or training option, e.g. --set ema_decay=0 lr=0.01 "
                        "(several after one --set, or repeated)")
    p.add_argument("--budget", metavar="DURATION",
                   help="wall-clock budget, e.g. 90s, 10m, 1h30m: the epochs are set from the measured step time "
                        "so that training, validation and checkpoints end within it, schedule completed")
    p.add_argument("--patience", type=int, metavar="N",
                   help="stop when validation accuracy has not improved for N epochs (best.pt keeps the best)")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model", description=(
        "Train a model. The run folder (--out, default runs/<model>-<timestamp>) receives config.json, "
        "metrics.csv, TensorBoard events, curves.png, report.json, log.txt, last.pt and best.pt."))
    p.add_argument("--model", help="registered model name (see `inceptionnet list`; default: googlenet_tv from "
                                   "ImageNet weights with --data, else googlenet_bn, or inception_cifar when the "
                                   "auto recipe finds images of 64 px or less and no weights)")
    p.add_argument("--recipe", help=f"training recipe: {', '.join(recipe_names())} (default: auto with --data, "
                                    "else the model's)")
    p.add_argument("--data", help="image folder of class folders, a folder with train/ and val/, or a CIFAR-10 "
                                  "folder (default: the embedded synthetic set)")
    p.add_argument("--val-split", type=float, help="validation fraction when the data has no val/ (default 0.2)")
    p.add_argument("--out", help="run folder (default runs/<model>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where last.pt stopped")
    p.add_argument("--strict", action="store_true", default=None,
                   help="stop at the first unreadable image instead of skipping and counting it")
    p.add_argument("--weights", metavar="FILE", help="start from these weights (fine-tuning)")
    p.add_argument("--pretrained", nargs="?", const=True, default=None, metavar="TAG",
                   help="start from published ImageNet weights: the model's default, or TAG (see `inceptionnet "
                        "weights`); default with --data and no --model: googlenet_tv.tv_in1k")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_const", const=False,
                   help="train from scratch even when no model is named")
    p.add_argument("--weights-dir", metavar="DIR",
                   help="folder holding weight files under their published names (default $INCEPTIONNET_WEIGHTS)")
    p.add_argument("--weights-source", choices=("inceptionnet", "torchvision", "timm", "cadene"),
                   help="layout of --weights (default inceptionnet)")
    p.add_argument("--save-every-steps", type=int, metavar="N", help="also write last.pt every N optimizer steps")
    p.add_argument("--no-lr-scaling", dest="scale_lr", action="store_false", default=None,
                   help="keep the recipe's lr when --batch-size differs from the recipe's (default: linear scaling)")
    p.add_argument("--sync-bn", action="store_true", default=None,
                   help="under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)")
    add_training_options(p)
    return p


def training_kwargs(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    """The options of `names` the user gave on the command line, plus the parsed --set overrides."""
    kwargs = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    kwargs["overrides"] = parse_set_options(args.overrides)
    return kwargs


SHARED = ("epochs", "batch_size", "img_size", "lr", "workers", "device", "precision", "seed", "deterministic", "quiet",
          "budget", "patience")


def run(args: argparse.Namespace) -> int:
    from ..engine.distributed import DistContext
    from ..train_api import train

    if args.weights_dir:
        os.environ["INCEPTIONNET_WEIGHTS"] = args.weights_dir
    kwargs = training_kwargs(args, SHARED + ("model", "recipe", "data", "val_split", "out", "resume", "strict",
                                             "weights", "weights_source", "save_every_steps", "scale_lr", "sync_bn",
                                             "pretrained"))
    report = train(**kwargs)
    if report.get("best_checkpoint") and DistContext.from_env().is_main:  # once, not per torchrun process
        print(f"best checkpoint: {report['best_checkpoint']}")
    return 0
