"""The ``agentexec`` command.

Each module named in :data:`COMMAND_MODULES` adds one subcommand: it exposes
``add_parser(subparsers)``, which adds its parser and sets ``func=`` (called with the parsed
arguments; returns the exit code). Adding a command is adding its module to the list.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agentexec._version import __version__

COMMAND_MODULES: list[str] = [
    "agentexec.cli.run",
    "agentexec.cli.status",
    "agentexec.cli.activity",
    "agentexec.cli.tail",
    "agentexec.cli.schedules",
    "agentexec.cli.dead_letter",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentexec", description="Production orchestration for AI agents."
    )
    parser.add_argument("--version", action="version", version=f"agentexec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":  # python -m agentexec.cli
    sys.exit(main())
