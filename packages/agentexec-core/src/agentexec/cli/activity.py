"""``agentexec activity list|show``: the activity records, a page at a time or one as a timeline."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from rich.table import Table

from agentexec.activity.status import Status

if TYPE_CHECKING:
    from agentexec.runners import TokenUsage
from agentexec.cli._ops import (
    CommandError,
    add_json_flag,
    bar,
    console,
    local_time,
    open_backends,
    plain,
    print_json,
    resolve_agent_id,
    run_command,
    safe,
    short_id,
    since,
    styled_status,
)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "activity", help="list activities or show one's log timeline",
        description="Read the activity records of tasks.",
    )
    commands = parser.add_subparsers(dest="activity_command", metavar="{list,show}", required=True)

    lister = commands.add_parser("list", help="a page of activities, newest first")
    lister.add_argument(
        "--status", type=_status, metavar="STATUS",
        help=f"only activities whose current status is this ({', '.join(s.value for s in Status)})",
    )
    lister.add_argument("--page", type=_positive, default=1, help="page number (default 1)")
    lister.add_argument("--page-size", type=_positive, default=20, help="rows per page (default 20)")
    add_json_flag(lister)
    lister.set_defaults(func=lambda args: run_command(_list, args))

    show = commands.add_parser("show", help="one activity's log as a timeline with percentages")
    show.add_argument(
        "agent_id", metavar="AGENT_ID",
        help="the agent id, or its start (the short id `activity list` prints)",
    )
    add_json_flag(show)
    show.set_defaults(func=lambda args: run_command(_show, args))


def usage_line(usage: TokenUsage) -> str:
    """``usage input 1,200 (cached 400)  output 300 (reasoning 100)  requests 3  model gpt-4.1
    cost $0.004400`` (the cost says why when it is unknown)."""
    parts = [f"usage input {usage.input_tokens:,}"]
    if usage.cached_tokens:
        parts[0] += f" (cached {usage.cached_tokens:,})"
    output = f"output {usage.output_tokens:,}"
    if usage.reasoning_tokens:
        output += f" (reasoning {usage.reasoning_tokens:,})"
    parts += [output, f"requests {usage.requests:,}"]
    if usage.model:
        parts.append(f"model {plain(usage.model)}")
    if usage.cost is not None:
        parts.append(f"cost ${usage.cost:.6f}")
    else:
        parts.append("cost unknown (no price for the model: see ax.pricing)")
    return "  ".join(parts)


def _status(value: str) -> Status:
    try:
        return Status(value.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown status {value!r}; choose from {', '.join(s.value for s in Status)}"
        ) from None


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return number


async def _list(args: argparse.Namespace) -> int:
    async with open_backends() as backends:
        page = await backends.activity.alist(page=args.page, page_size=args.page_size, status=args.status)
    if args.json:
        print_json(page.model_dump(mode="json"))
        return 0
    out = console()
    status = f" {args.status.value}" if args.status else ""
    table = Table(
        title=f"Activities{status}: page {page.page} of {max(page.pages, 1)} ({page.total} in all)",
        title_justify="left",
    )
    # fits 80 columns: short ids (accepted by `activity show`), every column at its width and
    # the log in what is left (rich would otherwise squeeze the narrow columns to nothing)
    task_width = min(20, max([4, *(len(i.agent_type) for i in page.items)]))
    fixed = 8 + task_width + 8 + 3 + 10 + 6 * 3 + 1  # columns, then padding and rules
    table.add_column("agent id", no_wrap=True, min_width=8)
    table.add_column("task", no_wrap=True, width=task_width, overflow="ellipsis")
    table.add_column("status", no_wrap=True, width=8)
    table.add_column("%", justify="right", no_wrap=True, width=3)
    table.add_column("updated", justify="right", no_wrap=True, width=10)
    table.add_column(
        "latest log", overflow="ellipsis", no_wrap=True, max_width=max(10, out.width - fixed)
    )
    for item in page.items:
        pct = "" if item.latest_percentage is None else str(item.latest_percentage)
        table.add_row(
            short_id(item.agent_id), plain(item.agent_type), styled_status(item.status.value), pct,
            f"{since(item.updated_at)} ago", plain(item.latest_log),
        )
    out.print(table)
    if page.page < page.pages:
        out.print(f"[dim]next: agentexec activity list --page {page.page + 1}[/]")
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with open_backends() as backends:
        agent_id = await resolve_agent_id(backends.activity, args.agent_id)
        detail = await backends.activity.adetail(agent_id)
    if detail is None:
        raise CommandError(f"no activity with agent id {agent_id} (check AGENTEXEC_* points at the right database)")
    usage = detail.usage
    if args.json:
        data = detail.model_dump(mode="json")
        data["usage"] = None if usage is None else dataclasses.asdict(usage)
        data["cost"] = None if usage is None else usage.cost
        print_json(data)
        return 0
    out = console()
    out.print(f"[bold]{safe(detail.agent_type)}[/]  {detail.agent_id}")
    out.print(f"status {styled_status(detail.status.value)}   progress {bar(detail.latest_percentage)}")
    out.print(f"created {local_time(detail.created_at)}   updated {since(detail.updated_at)} ago")
    if usage is not None:
        out.print(usage_line(usage))
    # fits 80 columns: the day is in the header above, the message wraps
    table = Table(title="Timeline", title_justify="left")
    table.add_column("time", no_wrap=True, min_width=8)
    table.add_column("+elapsed", justify="right", no_wrap=True, min_width=8)
    table.add_column("status", no_wrap=True, min_width=8)
    table.add_column("progress", no_wrap=True, min_width=16)
    table.add_column("message", min_width=12)
    start = detail.logs[0].created_at if detail.logs else detail.created_at
    for log in detail.logs:
        elapsed = (log.created_at - start).total_seconds()
        table.add_row(
            local_time(log.created_at)[11:], f"{elapsed:.3f}s", styled_status(log.status.value),
            bar(log.percentage, width=10), plain(log.message),
        )
    out.print(table)
    return 0
