"""``agentexec schedules list MODULE:POOL``: a pool's schedules and when they fire next."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from agentexec.cli._ops import (
    CommandError,
    add_json_flag,
    age,
    console,
    plain,
    print_json,
)
from agentexec.schedule import Schedule, ScheduleError


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "schedules", help="a pool's schedules and their next fire times",
        description="Schedules are defined in code (@pool.schedule, pool.add_schedule) and in "
        "schedule files (agentexec run MODULE:POOL --schedules FILE).",
    )
    commands = parser.add_subparsers(dest="schedules_command", metavar="{list}", required=True)
    lister = commands.add_parser("list", help="each schedule with its next fire times")
    lister.add_argument("pool", metavar="MODULE:POOL", help="the pool, as given to `agentexec run`")
    lister.add_argument(
        "--schedules", "-s", metavar="FILE", action="append",
        help="also load this schedule file, as `agentexec run --schedules` would (repeatable)",
    )
    lister.add_argument("--next", type=int, default=3, metavar="N", help="fire times to show (default 3)")
    add_json_flag(lister)
    lister.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agentexec.cli._ops import err_console

    try:
        return _list(args)
    except CommandError as exc:
        err_console().print(f"[red]error:[/red] {escape(str(exc))}")
        return exc.status


def load_pool_schedules(spec: str, files: list[str] | None) -> list[Schedule]:
    from agentexec.cli.run import load_pool

    try:
        pool = load_pool(spec)
    except (ImportError, LookupError, TypeError, ValueError) as exc:
        raise CommandError(str(exc), 2) from None
    for path in files or []:
        try:
            pool.load_schedules(path)
        except ScheduleError as exc:
            raise CommandError(str(exc)) from None
    return list(pool.scheduler)


def _list(args: argparse.Namespace) -> int:
    schedules = load_pool_schedules(args.pool, args.schedules)
    now = datetime.now(UTC)
    plans = [(s, s.upcoming(now, max(args.next, 1)) if s.enabled else []) for s in schedules]
    if args.json:
        print_json([
            {
                "name": s.name, "task": s.task_name, "rule": s.timing.describe(),
                "timezone": s.timezone, "enabled": s.enabled,
                "repeat": "forever" if s.repeat is None else s.repeat,
                "firings": "forever" if s.firings is None else s.firings,
                "priority": s.priority.value, "queue": s.queue_name, "description": s.description,
                "next": [t.astimezone(s.timing.tz).isoformat() for t in upcoming],
            }
            for s, upcoming in plans
        ])
        return 0
    out = console()
    if not plans:
        out.print(f"{args.pool} has no schedules. Add some with @pool.schedule(...), "
                  "pool.add_schedule(...) or --schedules FILE.")
        return 0
    table = Table(title=f"Schedules of {args.pool}", title_justify="left")
    for column in ("name", "task", "rule", "timezone", "firings", "next fire times"):
        table.add_column(column, no_wrap=column != "next fire times")
    for s, upcoming in plans:
        when = "\n".join(
            f"{t.astimezone(s.timing.tz).strftime('%Y-%m-%d %H:%M:%S %Z')} "
            f"(in {age((t - now).total_seconds())})"
            for t in upcoming
        )
        table.add_row(plain(s.name), plain(s.task_name), s.timing.describe(), s.timezone,
                      "forever" if s.firings is None else str(s.firings),
                      when if s.enabled else "[dim]disabled[/]")
    out.print(table)
    return 0
