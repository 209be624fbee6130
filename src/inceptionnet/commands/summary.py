"""`inceptionnet summary MODEL`: per-layer output shapes, parameters and multiply-adds of a model,
or GoogLeNet's Table 1 rebuilt from it (`--paper`)."""

from __future__ import annotations

import argparse

from .pretrained_option import add_pretrained_options, pretrained_tag


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("summary", help="per-layer shapes, parameters and multiply-adds of a model",
                       description="Build MODEL with random weights, run one forward pass and print each layer's "
                                   "output shape, parameters and multiply-adds.")
    p.add_argument("model", help="a registered model name (see `inceptionnet list`) or a weights tag")
    add_pretrained_options(p, "random weights")
    p.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="square input size in pixels (default: the model's default size)")
    p.add_argument("--num-classes", type=int, default=1000, metavar="K", help="classifier outputs (default 1000)")
    p.add_argument("--aux", action="store_true", help="build the aux heads and include them in the pass")
    p.add_argument("--paper", action="store_true", help="GoogLeNet variants: print the paper's Table 1 layout")
    p.add_argument("--depth", type=int, default=None, metavar="D",
                   help="show modules D levels deep (1: top-level layers; default: every leaf layer)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..analysis.summary import paper_table, summarize
    from ..errors import ConfigError
    from ..models import get_spec
    from ..weights import create_model

    tag, _ = pretrained_tag(args, args.model)
    tag = tag or (args.model if "." in args.model else None)
    args.model = args.model.split(".")[0]
    spec = get_spec(args.model)
    if args.depth is not None and args.depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {args.depth}")
    if args.input_size is not None and args.input_size < 1:
        raise ConfigError(f"--input-size must be at least 1, got {args.input_size}")
    size = args.input_size or spec.default_input_size
    model = create_model(args.model, weights=tag, num_classes=args.num_classes, aux_logits=args.aux)
    if args.paper:
        table = paper_table(model, size).format()
    else:
        table = summarize(model, size, in_chans=model.in_chans, with_aux=args.aux).format(depth=args.depth)
    loaded = f" (weights {tag})" if tag else ""
    print(f"{args.model}{loaded}: {spec.paper}\n{table}")
    return 0
