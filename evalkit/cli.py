"""Command line: ``evalkit run | tasks | models`` (train, report, ... register the same way)."""

from __future__ import annotations

import argparse
import os
import re
import sys

from evalkit import __version__
from evalkit.errors import EvalkitError

# Subcommand modules; each exposes ``add_parser(subparsers)`` which sets ``func``.
COMMANDS = ["evalkit.commands.run", "evalkit.commands.listing"]
OPTIONAL_COMMANDS = ["evalkit.commands.train", "evalkit.commands.serve", "evalkit.commands.cache", "evalkit.commands.export", "evalkit.commands.profile",
                     "evalkit.commands.store", "evalkit.commands.report", "evalkit.commands.leaderboard",
                     "evalkit.commands.gate", "evalkit.commands.nightly", "evalkit.commands.jobs", "evalkit.commands.board"]


DESCRIPTION = ("Evaluate language models on benchmarks, fine-tune them, profile them and compare the results. "
               "Run 'evalkit COMMAND --help' for the options of one command.")
_LITERAL = re.compile(r"``([^`]*)``")


def plain(text: str | None) -> str | None:
    """Module docstrings serve as command descriptions; shown in a terminal, their reStructuredText
    literals (double backticks) become plain text."""
    return _LITERAL.sub(r"\1", text) if text else text


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="evalkit", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"evalkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(subparsers)
    for name in OPTIONAL_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_parser(subparsers)
    for command in subparsers.choices.values():
        command.description = plain(command.description)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from evalkit.threads import passive_openmp

    passive_openmp()
    from evalkit.models.loader import quiet_bitsandbytes

    quiet_bitsandbytes()  # before any command imports peft/transformers, which import bitsandbytes
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that left shows up here, not at interpreter exit
        return code
    except EvalkitError as exc:
        print(f"evalkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("evalkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `evalkit runs | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
