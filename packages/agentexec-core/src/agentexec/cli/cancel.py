"""``agentexec cancel AGENT_ID``: cancel a queued or running task (``ax.cancel``)."""

from __future__ import annotations

import argparse
from typing import Any

from agentexec.cli._ops import (
    add_json_flag,
    console,
    open_backends,
    plain,
    print_json,
    resolve_agent_id,
    run_command,
)


def add_parser(subparsers: Any) -> None:
    from agentexec.cancellation import DEFAULT_REASON

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cancel",
        help="cancel a queued or running task",
        description="Cancel a task: a queued one never starts, a running one's handler is "
        "cancelled by its worker; it ends CANCELED with the reason. A finished task is left "
        "alone (exit status 0, saying so); an unknown id exits 1.",
    )
    parser.add_argument("agent_id", metavar="AGENT_ID", help="the task's agent id (or its first 8 hex digits)")
    parser.add_argument("--reason", "-r", default=DEFAULT_REASON, help=f"why (default: {DEFAULT_REASON!r})")
    parser.add_argument(
        "--queue", "-q", dest="queue_name", metavar="NAME", default=None,
        help="the queue it was enqueued on (default: CONF.queue_name)",
    )
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_command(_cancel, args)


async def _cancel(args: argparse.Namespace) -> int:
    from agentexec.cancellation import cancel_with

    async with open_backends(read_only=False) as backends:
        agent_id = await resolve_agent_id(backends.activity, args.agent_id)
        result = await cancel_with(backends, agent_id, args.reason, queue_name=args.queue_name)
    if args.json:
        print_json({"agent_id": str(result.agent_id), "state": result.state, "message": result.message})
    else:
        console().print(plain(result.message))
    return 1 if result.state == "unknown" else 0
