"""What the operator commands share: backends, queue selection, rich output, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from agentexec.config import CONF
from agentexec.runtime import Backends, build_backends, get_backends, has_backends
from agentexec.worker.lanes import LANES, lane_queue_name

STATUS_STYLE = {
    "QUEUED": "yellow",
    "RUNNING": "cyan",
    "COMPLETE": "green",
    "ERROR": "red",
    "CANCELED": "dim",
}


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 1 (2 for usage errors)."""

    def __init__(self, message: str, status: int = 1) -> None:
        self.status = status
        super().__init__(message)


def console() -> Console:
    # created per command so output goes to the sys.stdout of the moment (tests capture it);
    # piped output gets room for full agent ids instead of rich's 80-column default
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=wide)


def err_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def add_queue_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue", "-q", action="append", dest="queues", metavar="NAME",
        help=f"a pool's queue name (repeatable; default: CONF.queue_name = {CONF.queue_name!r}); "
        "its pipelines lane is included",
    )


def selected_queues(args: argparse.Namespace) -> list[str]:
    """Every lane queue of the queues named with ``--queue`` (default ``CONF.queue_name``)."""
    names: list[str] = list(getattr(args, "queues", None) or [CONF.queue_name])
    out: list[str] = []
    for name in names:
        if any(name.endswith(f":{lane}") for lane in LANES):
            candidates = [name]
        else:
            candidates = [lane_queue_name(name, lane) for lane in LANES]
        out.extend(c for c in candidates if c not in out)
    return out


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


@asynccontextmanager
async def open_backends() -> AsyncIterator[Backends]:
    """The process's backends when set explicitly (tests, embedding); otherwise fresh ones from
    CONF, closed afterwards."""
    if has_backends():
        yield get_backends()
        return
    backends = build_backends()
    try:
        yield backends
    finally:
        await backends.aclose()


def run_command(func: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    """Run an async command; a :class:`CommandError` prints its message and sets the exit status."""
    try:
        return anyio.run(func, args)
    except CommandError as exc:
        err_console().print(f"[red]error:[/red] {escape(str(exc))}")
        return exc.status
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a backend that is down or misconfigured: say so, no traceback
        if os.environ.get("AGENTEXEC_DEBUG"):
            raise
        err_console().print(
            f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}\n"
            "[dim](set AGENTEXEC_DEBUG=1 to see the traceback)[/]"
        )
        return 1


def age(seconds: float) -> str:
    """``"3.2s"``, ``"4m 05s"``, ``"2h 01m"``, ``"3d 4h"``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def since(moment: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return age((now - moment).total_seconds())


def local_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def bar(percentage: int | None, width: int = 20) -> str:
    if percentage is None:
        return " " * (width + 6)
    filled = round(width * percentage / 100)
    return f"[green]{'█' * filled}[/][dim]{'░' * (width - filled)}[/] {percentage:>3}%"


def plain(value: object) -> Text:
    """User data (log messages, names) as literal text: never read as rich markup."""
    return Text("" if value is None else str(value))


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def join(items: Iterable[str]) -> str:
    return ", ".join(items)
