"""``python -m courselib``: the course's command line.

Each subcommand lives in the module of its concept and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed args, returns an exit code). Those
modules import only light things at top level, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from courselib import settings
from courselib.errors import CourseError

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
        epilog="Settings (argument > environment variable > config file > default):\n"
        + settings.describe(),
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
        return 2
    try:
        return int(args.func(args) or 0)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
