"""``agentexec tail``: follow worker logs (``logs:<queue>``) and bus events (``events:<type>``) live."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
from rich.console import Console
from rich.text import Text

from agentexec.backends import Event, EventGapError
from agentexec.cli._ops import (
    CommandError,
    add_json_flag,
    console,
    err_console,
    open_backends,
    printable,
    run_command,
    safe,
)
from agentexec.config import CONF
from agentexec.events import CHANNEL_PREFIX, BusEvent, decode_all
from agentexec.limits import truncate
from agentexec.worker.channels import logs_channel

#: how much of a message that is not a log record is printed
RAW_LIMIT = 2000
LEVEL_STYLE = {"DEBUG": "dim", "INFO": "", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "tail", help="follow worker logs and events live (Ctrl+C to stop)",
        description="Print worker log lines of the pools on the given queues and events from "
        "the event bus as they happen.",
    )
    parser.add_argument(
        "--queue", "-q", action="append", dest="queues", metavar="NAME",
        help=f"whose worker logs to follow (repeatable; default {CONF.queue_name!r})",
    )
    parser.add_argument(
        "--events", "-e", action="append", metavar="PATTERN",
        help="event types to follow, '*' wildcards (repeatable; default: every event)",
    )
    parser.add_argument("--no-logs", action="store_true", help="events only")
    parser.add_argument("--no-events", action="store_true", help="worker logs only")
    parser.add_argument("--since", metavar="ID", help="first replay what came after this event id")
    parser.add_argument("--count", "-n", type=int, metavar="N", help="stop after N lines")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this long")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_command(_tail, args)


def channels(args: argparse.Namespace) -> list[str]:
    patterns: list[str] = []
    if not args.no_logs:
        patterns += [logs_channel(q) for q in (args.queues or [CONF.queue_name])]
    if not args.no_events:
        patterns += [CHANNEL_PREFIX + p for p in (args.events or ["*"])]
    if not patterns:
        raise CommandError("--no-logs and --no-events together leave nothing to follow", 2)
    return patterns


async def _tail(args: argparse.Namespace) -> int:
    patterns = channels(args)
    out = console()
    if not args.json:
        out.print(f"[dim]following {', '.join(patterns)} (Ctrl+C to stop)[/]")
    printed = 0
    since = args.since
    with anyio.move_on_after(args.timeout if args.timeout is not None else float("inf")):
        async with open_backends() as backends:
            for _ in range(10):  # each gap is reported, then the replay starts after it
                try:
                    async with backends.events.subscribe(patterns, last_id=since) as stream:
                        printed = await _follow(stream, args, out, printed)
                    break
                except EventGapError as gap:
                    err_console().print(f"[yellow]gap: {safe(gap)}; showing what is kept from here[/]")
                    since = gap.resume_id
    return 0


async def _follow(stream: AsyncIterator[Event], args: argparse.Namespace, out: Console, printed: int) -> int:
    """Print what ``stream`` brings until ``--count`` lines were printed; returns that count."""
    async for raw in stream:
        try:
            line = _line(raw, args.json)
        except (ValueError, TypeError, RecursionError) as exc:
            # a message no one can print (nested too deep, say) is skipped, not fatal
            reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
            err_console().print(
                f"[yellow]skipped an unreadable message on {safe(raw.channel)} "
                f"(id {safe(raw.id)}): {safe(reason[:200])}[/]"
            )
            continue
        if line is None:
            continue
        if args.json:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        else:
            out.print(line)
        printed += 1
        if args.count is not None and printed >= args.count:
            break
    return printed


def _line(raw: Event, as_json: bool) -> str | None:
    """What to print for one message (``None``: nothing)."""
    record = render(raw)
    if record is None:
        return None
    if "events" in record:  # a message holding several events: one line each
        lines = [_line_of(each, as_json) for each in record["events"]]
        return "\n".join(lines)
    return _line_of(record, as_json)


def _line_of(record: dict[str, Any], as_json: bool) -> str:
    if as_json:  # plain text for scripts: the markup is for terminals
        record = {**record, "text": Text.from_markup(record["text"]).plain}
        return json.dumps(record, default=str)
    return str(record["text"])


def render(raw: Event) -> dict[str, Any] | None:
    """A printable record of one message: ``kind`` (log/event), its fields, and ``text``."""
    if raw.channel.startswith(CHANNEL_PREFIX):
        events = decode_all(raw)
        if not events:
            return None
        records = [_event_record(raw, event) for event in events]
        if len(records) == 1:
            return records[0]
        return {"kind": "events", "id": raw.id, "events": records,
                "text": "\n".join(str(r["text"]) for r in records)}
    try:
        msg = json.loads(raw.data)
    except (ValueError, RecursionError):  # printed as the raw text it is
        msg = None
    if isinstance(msg, list) and msg and all(isinstance(m, dict) for m in msg):
        # the records a worker logged meanwhile, in one message: one line each
        records = [_log_record(raw, m) for m in msg]
        if len(records) == 1:
            return records[0]
        return {"kind": "logs", "id": raw.id, "events": records,
                "text": "\n".join(str(r["text"]) for r in records)}
    if not isinstance(msg, dict):  # shown as the text it is, within a screenful
        text = truncate(raw.data, RAW_LIMIT)
        return {"kind": "log", "channel": raw.channel, "message": text,
                "text": f"[dim]{safe(raw.channel)}[/] {safe(text)}"}
    return _log_record(raw, msg)


def _log_record(raw: Event, msg: dict[str, Any]) -> dict[str, Any]:
    worker = safe(msg.get("worker", "?"))
    when = _clock(msg.get("time"))
    if msg.get("event") == "exit":
        text = f"{when} \\[Worker {worker}] [dim]exited (pid {safe(msg.get('pid'))})[/]"
    else:
        level = printable(msg.get("level", "INFO")).upper()
        style = LEVEL_STYLE.get(level, "")
        line = f"{safe(f'{level:<7}')} {safe(msg.get('message', ''))}"
        text = f"{when} \\[Worker {worker}] " + (f"[{style}]{line}[/]" if style else line)
    return {"kind": "log", "channel": raw.channel, **msg, "text": text}


def _clock(value: Any) -> str:
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        moment = datetime.now(UTC)
    return moment.astimezone().strftime("%H:%M:%S")


def _event_record(raw: Event, event: BusEvent) -> dict[str, Any]:
    when = event.time.astimezone().strftime("%H:%M:%S")
    payload = json.dumps(event.payload, default=str) if event.payload is not None else ""
    source = f" from {safe(event.source)}" if event.source else ""
    return {
        "kind": "event", "id": raw.id, **event.model_dump(mode="json", exclude={"id"}),
        "text": f"{when} [magenta]event[/] [bold]{safe(event.event_type)}[/]{source} {safe(payload)}",
    }
