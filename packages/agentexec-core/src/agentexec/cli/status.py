"""``agentexec status``: queue depth per priority, live workers with heartbeat age, dead letters."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from agentexec.activity.creates import acreated
from agentexec.activity.status import Status
from agentexec.cli._ops import (
    add_json_flag,
    add_queue_flag,
    age,
    console,
    open_backends,
    plain,
    plural,
    print_json,
    run_command,
    selected_queues,
    styled_status,
)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="queues, live workers and dead letters at a glance",
        description="Queue depth per priority, tasks in flight, live workers with the age of their "
        "last heartbeat, dead-letter counts and activity totals per status.",
    )
    add_queue_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_command(_status, args)


async def _status(args: argparse.Namespace) -> int:
    async with open_backends() as backends:
        queue = backends.queue
        stats = [await queue.stats(name) for name in selected_queues(args)]
        totals: dict[str, int] = {}
        # activities this process enqueued are written behind the push (agentexec.activity.creates):
        # counted once written, as every ax.activity read of this process does
        await acreated()
        for status in Status:
            page = await backends.activity.alist(page=1, page_size=1, status=status)
            totals[status.value] = page.total
        lease_timeout = float(getattr(queue, "lease_timeout", 30.0))

    workers: list[dict[str, Any]] = [
        {"queue": s.queue_name, "worker": consumer, "heartbeat_age": round(beat, 3),
         "alive": beat <= lease_timeout}
        for s in stats for consumer, beat in sorted(s.consumers.items(), key=lambda kv: kv[1])
    ]
    if args.json:
        print_json({
            "queues": [
                {"queue": s.queue_name, "high": s.high, "low": s.low, "queued": s.high + s.low,
                 "in_flight": s.in_flight, "dead": s.dead}
                for s in stats
            ],
            "workers": workers,
            "dead_letters": sum(s.dead for s in stats),
            "activities": totals,
        })
        return 0

    out = console()
    table = Table(title="Queues", title_justify="left")
    for column in ("queue", "high", "low", "in flight", "dead letters"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for s in stats:
        table.add_row(plain(s.queue_name), str(s.high), str(s.low), str(s.in_flight),
                      f"[red]{s.dead}[/]" if s.dead else "0")
    out.print(table)

    live = [w for w in workers if w["alive"]]
    wtable = Table(title=f"Workers ({len(live)} live)", title_justify="left")
    for column in ("worker", "queue", "last heartbeat"):
        wtable.add_column(column, no_wrap=True)
    for w in workers:
        beat = f"{age(w['heartbeat_age'])} ago"
        wtable.add_row(plain(w["worker"]), plain(w["queue"]), beat if w["alive"] else f"[red]{beat} (stale)[/]")
    if workers:
        out.print(wtable)
    else:
        out.print("[dim]No workers have heartbeated on these queues (is a pool running?)[/]")

    dead = sum(s.dead for s in stats)
    if dead:
        out.print(f"[red]{plural(dead, 'dead letter')}[/]: see [bold]agentexec dead-letter list[/]")
    else:
        out.print("Dead letters: 0")
    out.print("Activities: " + "  ".join(f"{styled_status(k)} {v}" for k, v in totals.items()))
    return 0
