"""``python -m courselib``: the course's command line.

Each subcommand lives in the module of its concept and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed args, returns an exit code). Those
modules import only light things at top level, so ``--help`` is instant. Exit status: see
:mod:`courselib.errors` (0 done, 1 failures found, 2 a mistake to fix, 130 interrupted).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from courselib import settings
from courselib.config import PRECEDENCE
from courselib.errors import EXIT_MISTAKE, run_command

# subcommand module -> registered by it (order = order in --help)
SUBCOMMAND_MODULES = [
    "courselib.models.cli",
    "courselib.doctor.cli",
    "courselib.widgets.terminal_chat",
    "courselib.memory.cli",
    "courselib.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m courselib",
        description="LLM course lab: build the offline course models, chat, estimate memory.",
        epilog=f"Settings ({PRECEDENCE}):\n" + settings.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_MISTAKE
    return run_command(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
