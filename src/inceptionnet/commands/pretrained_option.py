"""`--pretrained [TAG]` and `--weights-dir`, shared by the commands that load a model."""

from __future__ import annotations

import argparse
import os


def add_pretrained_options(p: argparse.ArgumentParser, what: str) -> None:
    """Add `--pretrained [TAG]` (published weights instead of `what`) and `--weights-dir DIR`."""
    p.add_argument("--pretrained", nargs="?", const="", default=None, metavar="TAG",
                   help=f"use published weights instead of {what}: a tag from `inceptionnet weights` or a model "
                        "name (its default weights); with no value, the default weights of the model named in "
                        "place of the checkpoint")
    p.add_argument("--weights-dir", metavar="DIR",
                   help="folder holding weight files under their published names (air-gapped machines; "
                        "default $INCEPTIONNET_WEIGHTS)")


def pretrained_tag(args: argparse.Namespace, positional: str | None) -> tuple[str | None, bool]:
    """(the weights tag asked for or None, whether `positional` was consumed as the model name).

    `--pretrained TAG` names the weights itself; a bare `--pretrained` takes the default weights of the
    model (or tag) given as `positional`. Sets $INCEPTIONNET_WEIGHTS from `--weights-dir`."""
    from ..errors import ConfigError
    from ..weights import resolve_weights

    if getattr(args, "weights_dir", None):
        os.environ["INCEPTIONNET_WEIGHTS"] = args.weights_dir
    if args.pretrained is None:
        return None, False
    if args.pretrained:
        return resolve_weights(args.pretrained, pretrained=True).tag, False
    if not positional:
        raise ConfigError("--pretrained without a tag needs a model name in place of the checkpoint")
    return resolve_weights(positional, pretrained=True).tag, True


def checkpoint_or_tag(args: argparse.Namespace) -> str:
    """What a command loads: `args.checkpoint`, or the weights tag `--pretrained` asks for."""
    from ..errors import ConfigError

    tag, _ = pretrained_tag(args, args.checkpoint)
    if tag is None and not args.checkpoint:
        raise ConfigError("give a checkpoint (or a weights tag), or --pretrained TAG")
    return tag or args.checkpoint
