"""Command line: `python -m word2scene COMMAND ...` (also the `word2scene` console script).
One module per command group; each registers its commands and their handlers."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import InputError
from . import captions, concepts, evaluation, scenes, training

GROUPS = (scenes, concepts, training, evaluation, captions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="word2scene", description="Remote-sensing scenes from one word "
                                     "(Stable Diffusion 1.5 + concept LoRA), offline.")
    parser.add_argument("--version", action="version", version=f"word2scene {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
    _remember_parsers(sub)
    return parser


def _remember_parsers(sub) -> None:
    """Each command's parser in its own defaults, so an error can be told in its flags."""
    for command in sub.choices.values():
        command.set_defaults(command_parser=command)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _remember_parsers(action)


def input_flag(args, input_name: str) -> str:
    """The option the user set for a core input name: the command's own `input_names`
    (e.g. strength_model -> --strength), else the option whose dest is that name
    (out -> --out), else the name itself (a positional such as `dataset`)."""
    named = getattr(args, "input_names", {})
    if input_name in named:
        return named[input_name]
    parser = getattr(args, "command_parser", None)
    for action in parser._actions if parser else ():
        if action.dest == input_name and action.option_strings:
            return max(action.option_strings, key=len)
    return input_name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except InputError as exc:
        print(f"word2scene: error: {input_flag(args, exc.input_name)}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
