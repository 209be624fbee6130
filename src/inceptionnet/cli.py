"""`inceptionnet` command line: one subcommand per module in `inceptionnet.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import InceptionNetError, RunStopped

# Each name is a module in inceptionnet.commands with `add_parser(subparsers)` and `run(args) -> int`.
COMMANDS = ("list", "train", "demo", "summary", "eval", "predict", "export", "quantize", "serve", "convert",
            "weights", "embed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inceptionnet", description="The Inception family of image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"inceptionnet.commands.{name.replace('-', '_')}")
        command = module.add_parser(sub)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a user error prints one line on stderr and returns exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except InceptionNetError as e:
        print(f"inceptionnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RunStopped as e:
        print(f"inceptionnet {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"inceptionnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
