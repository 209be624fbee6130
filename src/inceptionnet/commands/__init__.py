"""One module per CLI subcommand, each with `add_parser(subparsers)` and `run(args) -> int`."""

from __future__ import annotations

import argparse

from ..runtime import PRECISIONS


def add_precision_option(p: argparse.ArgumentParser) -> None:
    """`--precision` for the inference commands (eval, predict, export)."""
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="compute precision of the fused graph; auto (default): fp32, or bf16 where the device has "
                        "native bf16 and a measurement on the first images shows it faster with the same top-1")
