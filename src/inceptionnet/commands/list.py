"""`inceptionnet list`: the registered models with their input sizes and peers."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("list", help="list the registered models")
    return p


def run(args: argparse.Namespace) -> int:
    from ..models import get_spec, list_models

    print(f"{'model':24} {'input':>5} {'min':>4}  {'aux':4} {'weights from':20} paper")
    for name in list_models():
        s = get_spec(name)
        peers = ", ".join(f"{k}:{v}" for k, v in s.peers.items()) or "-"
        aux = str(len(s.aux_heads)) if s.aux_heads else "-"
        print(f"{name:24} {s.default_input_size:>5} {s.min_input_size:>4}  {aux:4} {peers:20} {s.paper}")
    return 0
