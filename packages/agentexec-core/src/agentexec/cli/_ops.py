"""What the operator commands share: backends, queue selection, rich output, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import anyio
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from agentexec._redact import redact
from agentexec.cli._checks import (
    CONNECT_TIMEOUT,
    CommandError,
    check_reachable,
    mask_url,
    require_existing_databases,
    sqlite_file,
)
from agentexec.config import CONF
from agentexec.lanes import LANES, lane_queue_name
from agentexec.runtime import Backends, build_backends, configured_urls, get_backends, has_backends

__all__ = [
    "CONNECT_TIMEOUT", "CommandError", "check_reachable", "mask_url", "require_existing_databases",
    "sqlite_file",
]

STATUS_STYLE = {
    "QUEUED": "yellow",
    "RUNNING": "cyan",
    "COMPLETE": "green",
    "ERROR": "red",
    "CANCELED": "dim",
}


def console() -> Console:
    # created per command so output goes to the sys.stdout of the moment (tests capture it);
    # piped output gets room for full agent ids instead of rich's 80-column default
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=wide)


def err_console() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)  # one line per error


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
async def open_backends(*, read_only: bool = True) -> AsyncIterator[Backends]:
    """The process's backends when set explicitly (tests, embedding); otherwise fresh ones from
    CONF, closed afterwards. Before building them, the servers must answer (fast, see
    :func:`check_reachable`) and, for ``read_only`` commands, SQLite files must exist."""
    if has_backends():
        yield get_backends()
        return
    urls = configured_urls()
    check_reachable(urls)
    if read_only:
        require_existing_databases(urls)
    backends = build_backends(urls)
    try:
        yield backends
    finally:
        await backends.aclose()


async def resolve_agent_id(store: Any, text: str) -> UUID:
    """A full agent id, or the unique agent id that starts with ``text`` (the short ids the
    tables print)."""
    try:
        return UUID(text)
    except ValueError:
        pass
    prefix = text.strip().lower()
    if len(prefix) < 4 or not re.fullmatch(r"[0-9a-f-]+", prefix):
        raise CommandError(
            f"not an agent id: {text!r} (give the id, or at least its first 4 hex digits, as "
            f"`agentexec activity list` prints it)", 2,
        )
    find = getattr(store, "afind_prefix", None)
    if callable(find):
        found: list[UUID] = list(await find(prefix, 2))
    else:  # a store without prefix search: look through the newest activities
        found, page = [], 1
        while len(found) < 2 and page <= 20:
            listing = await store.alist(page=page, page_size=500)
            found += [i.agent_id for i in listing.items if str(i.agent_id).startswith(prefix)]
            if page >= listing.pages:
                break
            page += 1
    if not found:
        raise CommandError(f"no activity whose agent id starts with {prefix!r}")
    if len(found) > 1:
        raise CommandError(
            f"{prefix!r} is the start of several agent ids ({', '.join(str(f) for f in found)}, ...): "
            f"give more of it"
        )
    return found[0]


def short_id(agent_id: object) -> str:
    """The first 8 hex digits of an agent id: what tables print (commands accept it)."""
    return str(agent_id)[:8]


def run_command(func: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    """Run an async command; a :class:`CommandError` prints its message and sets the exit status."""
    try:
        return anyio.run(func, args)
    except CommandError as exc:
        err_console().print(f"[red]error:[/red] {safe(redact(exc))}")
        return exc.status
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a backend that is down or misconfigured: say so, no traceback
        if CONF.debug or os.environ.get("AGENTEXEC_DEBUG", "").lower() in ("1", "true", "yes", "on"):
            raise
        err_console().print(
            f"[red]error:[/red] {type(exc).__name__}: {safe(redact(exc))}\n"
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


#: characters a terminal may act on: C0 controls but tab and newline, DEL, C1 controls (0x9b is
#: an 8-bit CSI), and the bidirectional overrides that reorder what is shown (Trojan Source)
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """User data with every character a terminal would act on shown as its escape instead
    (``\\x1b[2J`` prints as those five characters, it does not clear the screen)."""
    text = "" if value is None else str(value)
    return _UNPRINTABLE.sub(_escaped, text)


def safe(value: object) -> str:
    """User data for a rich markup string: :func:`printable`, and never read as markup."""
    return escape(printable(value))


def plain(value: object) -> Text:
    """User data (log messages, names) as literal text: never read as rich markup, and with
    terminal control characters escaped (:func:`printable`)."""
    return Text(printable(value))


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def join(items: Iterable[str]) -> str:
    return ", ".join(items)
