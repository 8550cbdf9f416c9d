"""The ``agentexec`` command.

Each module named in :data:`COMMAND_MODULES` adds one subcommand: it exposes
``add_parser(subparsers)``, which adds its parser and sets ``func=`` (called with the parsed
arguments; returns the exit code). Adding a command is adding its module to the list.

Plugins add commands the same way, through the ``agentexec_names`` hook: a
``NameSpec(module="agentexec.cli", name="db", load=...)`` whose ``load()`` returns such a module
(agentexec-sqlalchemy's ``agentexec db`` is one). Only the plugin command that ``argv`` names is
loaded.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

COMMAND_MODULES: list[str] = [
    "agentexec.cli.run",
    "agentexec.cli.status",
    "agentexec.cli.activity",
    "agentexec.cli.tail",
    "agentexec.cli.schedules",
    "agentexec.cli.dead_letter",
    "agentexec.cli.cancel",
]


def command_name(module: str) -> str:
    """``agentexec.cli.dead_letter`` -> ``dead-letter``."""
    return module.rsplit(".", 1)[-1].replace("_", "-")


class _Version(argparse.Action):
    """``--version``, reading the installed version only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from agentexec._version import __version__

        sys.stdout.write(f"agentexec {__version__}\n")
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the module of the command it names is imported (each
    command module imports what it needs, so ``agentexec run`` never loads the table renderer
    and ``agentexec status`` never loads the worker pool)."""
    parser = argparse.ArgumentParser(
        prog="agentexec", description="Production orchestration for AI agents."
    )
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(argv)
    if chosen is None and argv is not None and "--version" in argv:
        return parser  # nothing else to parse
    for name in COMMAND_MODULES:
        if chosen is None or command_name(name) == chosen:
            importlib.import_module(name).add_parser(subparsers)
    if chosen is None or chosen not in {command_name(m) for m in COMMAND_MODULES}:
        for command, spec in sorted(plugin_commands().items()):
            if chosen is None or command == chosen:
                spec.load().add_parser(subparsers)
    return parser


def plugin_commands() -> dict[str, Any]:
    """The commands plugins add: command name -> its ``NameSpec`` (not loaded yet)."""
    from agentexec.plugins import get_registry

    return get_registry().names(PLUGIN_COMMANDS)


#: the module name plugins register their commands under (``NameSpec.module``)
PLUGIN_COMMANDS = "agentexec.cli"


def _chosen(argv: Sequence[str] | None) -> str | None:
    """The command ``argv`` names, when it names exactly one we know (else None: load all)."""
    if argv is None:
        return None
    names = {command_name(m) for m in COMMAND_MODULES}
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in names:
        return first
    return first if first is not None and first in plugin_commands() else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names. An invalid ``AGENTEXEC_*`` value ends it with one line
    and status 1 (:class:`agentexec.config.ConfigError` is a ``SystemExit``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if argv is None and _chosen(args_list) == "run":
        # before anything slow: a SIGTERM while the app imports stops the pool before it starts
        from agentexec.worker import early_stop

        early_stop.catch()
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":  # python -m agentexec.cli
    sys.exit(main())
