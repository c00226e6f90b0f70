"""Command line: `python -m word2scene COMMAND ...` (also the `word2scene` console script).
One module per command group; each registers its commands and their handlers."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import InputError
from . import concepts, evaluation, scenes, training

GROUPS = (scenes, concepts, training, evaluation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="word2scene", description="Remote-sensing scenes from one word "
                                     "(Stable Diffusion 1.5 + concept LoRA), offline.")
    parser.add_argument("--version", action="version", version=f"word2scene {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except InputError as exc:
        print(f"word2scene: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
