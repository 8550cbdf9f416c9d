"""``agentexec dead-letter list|requeue|purge``: the tasks the queue gave up on.

``requeue`` pushes tasks back with their attempts reset, marks their activity QUEUED again and
forgets their stored failure, so a caller's ``ax.get_result`` waits for the new run instead of
seeing the old error.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, datetime
from typing import Any

from rich.prompt import Confirm
from rich.table import Table

from agentexec.activity.status import Status
from agentexec.backends import DeadLetter, UnknownActivityError
from agentexec.cli._ops import (
    CommandError,
    add_json_flag,
    add_queue_flag,
    console,
    open_backends,
    plain,
    plural,
    print_json,
    run_command,
    selected_queues,
    short_id,
    since,
)
from agentexec.runtime import Backends

#: how many dead letters one command looks at per queue
SCAN_LIMIT = 100_000
REQUEUED_MESSAGE = "Requeued from the dead-letter list (attempts reset)."


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dead-letter", help="list, requeue or purge dead-lettered tasks",
        description="Tasks end in the dead-letter list after max_attempts lost leases, or when "
        "their payload is not a task.",
    )
    commands = parser.add_subparsers(dest="dead_letter_command", metavar="{list,requeue,purge}", required=True)

    lister = commands.add_parser("list", help="the dead-lettered tasks, oldest first")
    add_queue_flag(lister)
    lister.add_argument("--limit", type=int, default=100, help="rows per queue (default 100)")
    add_json_flag(lister)
    lister.set_defaults(func=lambda args: run_command(_list, args))

    requeue = commands.add_parser("requeue", help="push dead-lettered tasks back to their queue")
    add_queue_flag(requeue)
    requeue.add_argument("ids", nargs="*", metavar="ID", help="dead-letter ids (from `dead-letter list`)")
    requeue.add_argument("--all", action="store_true", help="every dead-lettered task of the queues")
    add_json_flag(requeue)
    requeue.set_defaults(func=lambda args: run_command(_requeue, args))

    purge = commands.add_parser("purge", help="delete every dead-lettered task of the queues")
    add_queue_flag(purge)
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add_json_flag(purge)
    purge.set_defaults(func=lambda args: run_command(_purge, args))


async def _dead(backends: Backends, queues: list[str], limit: int = SCAN_LIMIT) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for name in queues:
        letters += await backends.queue.dead_letters(name, limit)
    return letters


def _row(dl: DeadLetter) -> dict[str, Any]:
    env = dl.envelope
    return {
        "id": dl.id,
        "queue": dl.queue_name,
        "task": env.task_name if env else None,
        "agent_id": str(env.agent_id) if env else None,
        "attempts": env.attempts + 1 if env else None,
        "reason": dl.reason,
        "failed_at": datetime.fromtimestamp(dl.failed_at, UTC).isoformat() if dl.failed_at else None,
        "payload": None if env else dl.payload,
    }


async def _list(args: argparse.Namespace) -> int:
    async with open_backends() as backends:
        letters = await _dead(backends, selected_queues(args), args.limit)
    rows = [_row(dl) for dl in letters]
    if args.json:
        print_json(rows)
        return 0
    out = console()
    if not rows:
        out.print("No dead letters.")
        return 0
    table = Table(title=f"Dead letters ({len(rows)})", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("queue", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("agent id", no_wrap=True)
    table.add_column("failed", no_wrap=True)
    table.add_column("reason")
    for dl, row in zip(letters, rows, strict=True):
        failed = f"{since(datetime.fromtimestamp(dl.failed_at, UTC))} ago" if dl.failed_at else ""
        task = plain(row["task"]) if row["task"] else "[red]not a task[/]"
        agent = short_id(row["agent_id"]) if row["agent_id"] else ""
        table.add_row(plain(row["id"]), plain(row["queue"]), task, agent, failed, plain(row["reason"]))
    out.print(table)
    out.print("[dim]agentexec dead-letter requeue ID... | --all   ·   agentexec dead-letter purge[/]")
    return 0


async def _requeue(args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        raise CommandError("name the dead letters to requeue (ids from `agentexec dead-letter list`) or pass --all", 2)
    if args.ids and args.all:
        raise CommandError("give ids or --all, not both", 2)
    async with open_backends() as backends:
        letters = await _dead(backends, selected_queues(args))
        if args.ids:
            wanted = {_match(letters, given, args) for given in args.ids}
            letters = [dl for dl in letters if dl.id in wanted]
        not_tasks = [dl for dl in letters if dl.envelope is None]
        tasks = [dl for dl in letters if dl.envelope is not None]
        requeued = 0
        by_queue: dict[str, list[DeadLetter]] = {}
        for dl in tasks:
            by_queue.setdefault(dl.queue_name, []).append(dl)
        for queue_name, items in by_queue.items():
            # the stored failure and the activity first: a fast worker may finish the task
            # as soon as it is pushed, and its outcome must not be overwritten afterwards
            for dl in items:
                await _reopen(backends, dl)
            requeued += await backends.queue.requeue_dead(queue_name, [dl.id for dl in items])
    if args.json:
        print_json({"requeued": requeued, "not_tasks": [dl.id for dl in not_tasks]})
        return 0
    out = console()
    out.print(f"Requeued {plural(requeued, 'task')}.")
    if not_tasks:
        out.print(
            f"[yellow]{plural(len(not_tasks), 'dead letter')} cannot be requeued (the payload is not a "
            "task): delete them with `agentexec dead-letter purge`[/]"
        )
    return 0


def _match(letters: list[DeadLetter], given: str, args: argparse.Namespace) -> str:
    """The dead letter ``given`` names: its id, the start of its id, or the (short) agent id
    of its task, as `dead-letter list` prints them."""
    exact = [dl.id for dl in letters if dl.id == given]
    if exact:
        return exact[0]
    text = given.lower()
    found = [
        dl.id for dl in letters
        if dl.id.lower().startswith(text)
        or (dl.envelope is not None and len(text) >= 4 and str(dl.envelope.agent_id).startswith(text))
    ]
    if len(found) == 1:
        return found[0]
    if found:
        raise CommandError(f"{given!r} matches several dead letters ({', '.join(found)}): give more of it")
    raise CommandError(
        f"no dead letter with id {given} on {', '.join(selected_queues(args))} "
        "(see `agentexec dead-letter list`; use --queue for another queue)"
    )


async def _reopen(backends: Backends, dl: DeadLetter) -> None:
    assert dl.envelope is not None
    agent_id = dl.envelope.agent_id
    await backends.results.delete(agent_id)
    with contextlib.suppress(UnknownActivityError):  # a task pushed without an activity
        await backends.activity.aappend(agent_id, REQUEUED_MESSAGE, Status.QUEUED, 0)


async def _purge(args: argparse.Namespace) -> int:
    queues = selected_queues(args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("purge deletes dead letters for good: pass --yes to confirm", 2)
        if not Confirm.ask(f"Delete every dead letter of {', '.join(queues)}?", console=console()):
            return 1
    async with open_backends() as backends:
        purged = 0
        for name in queues:
            purged += await backends.queue.purge_dead(name)
    if args.json:
        print_json({"purged": purged})
    else:
        console().print(f"Purged {plural(purged, 'dead letter')}.")
    return 0
