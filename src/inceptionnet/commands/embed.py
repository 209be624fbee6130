"""`inceptionnet embed`: one pooled embedding per image of a folder, as a .npy matrix plus a CSV of paths."""

from __future__ import annotations

import argparse
import sys

from .pretrained_option import add_pretrained_options, pretrained_tag


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("embed", help="write one pooled feature vector per image (.npy + .csv of paths)",
                       description="Run every image of FOLDER through the model's trunk (its own preprocessing) "
                                   "and write the globally pooled features, one row per image, to --out (.npy) "
                                   "with the image paths in a .csv beside it. Unreadable files are named and skipped.")
    p.add_argument("checkpoint", help="checkpoint file, run folder or weights tag (see `inceptionnet weights`)")
    p.add_argument("folder", nargs="?", help="image file or folder (searched recursively)")
    p.add_argument("--out", default="embeddings.npy", help="output .npy file (default embeddings.npy)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    add_pretrained_options(p, "a checkpoint")
    return p


def run(args: argparse.Namespace) -> int:
    from ..embed import embed_images, write_embeddings
    from ..errors import ConfigError

    tag, named_model = pretrained_tag(args, args.checkpoint)
    source, folder = tag or args.checkpoint, args.folder
    if tag is not None and not named_model and folder is None:  # `embed --pretrained TAG FOLDER`
        folder = args.checkpoint
    if folder is None:
        raise ConfigError("no image folder given")
    embeddings, paths, skipped = embed_images(source, folder, args.device, args.batch_size)
    for path, reason in skipped:
        print(f"inceptionnet embed: skipped {path}: {reason}", file=sys.stderr)
    npy, csv_path = write_embeddings(embeddings, paths, args.out)
    print(f"{embeddings.shape[0]} embeddings of {embeddings.shape[1]} values: {npy} (paths: {csv_path}); "
          f"{len(skipped)} file(s) skipped")
    return 0
