"""Lifecycle events on ``ax.events``: what happens to every task, for apps that react to it.

The pool publishes, on the process's event backend (channel ``events:<event_type>``, like any
``ax.events.publish``):

- ``task.queued`` (an ``ax.enqueue``, a schedule's firing, a retry put back in the queue),
- ``task.started`` (its RUNNING line),
- ``task.completed`` / ``task.failed`` / ``task.cancelled`` (its final line),
- ``schedule.fired`` (a schedule enqueued its task; ``task.queued`` follows for that task).

The payload of a task event is ``{"task_id", "agent_id", "task_name", "status", "metadata"}``
(``task_id`` is the ``agent_id``, the scheduler document's name for it), plus ``"message"``
(the error, or the cancellation reason) for ``task.failed`` and ``task.cancelled``; never the
result (read it with ``ax.get_result(agent_id)``). ``source`` is ``"agentexec"``.

Cost: in a worker, events are derived from the lifecycle lines its writer has just committed
(:mod:`agentexec.worker.writer`, group commit) and published by a background task, one
message per event type for everything committed over ``LINGER`` (50 ms), so a
task never waits for its events and a busy worker sends a few messages every 50 ms, not one per
task. The message is compact (:func:`task_rows_message`: a row per event, the task's ids, name
and metadata, no JSON built per event); :func:`agentexec.events.decode_all` hands out each
event as ``encode`` makes it. Every subscriber of the events stream reads every message of
it (on Redis; the workers' ``control:cancel`` listeners read the control stream only,
:mod:`agentexec.limits`), so this keeps their cost per window, not per task. A backend with
:class:`~agentexec.backends.MixedPublish` (the SQL transport) takes all the messages of a
window, every type, as one write, in the transaction of the acks and results its writer
commits anyway (PostgreSQL: one statement for the lock that orders event ids, the rows and the
NOTIFY; the rows' large JSON compresses with lz4, migration ax0008: pglz cost the server more
than the insert). Each task's events arrive in order: a window's messages keep every
task's events in the order they happened (see :func:`_windows`), and the windows of one write
keep theirs. Measured figures: docs/schedules-and-events.md. An event is published once its
line is committed: a ``task.completed`` subscriber finds the activity COMPLETE (its result
follows a moment later: ``ax.get_result`` waits for it). Producers publish ``task.queued``
behind the activity they already create behind the push (:mod:`agentexec.activity.creates`).

Events are notices, delivered at most once: while the event backend is unreachable they wait
(at most ``MAX_PENDING``, then the oldest are dropped, said once), and a worker killed before
publishing loses its last ones. ``CONF.lifecycle_events = False``
(``AGENTEXEC_LIFECYCLE_EVENTS=false``) publishes none.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

from agentexec._ratelimit import RateLimited
from agentexec.activity.status import Status
from agentexec.backends import EventBackend, LogEntry, MixedPublish
from agentexec.config import CONF
from agentexec.faults import describe, is_transient
from agentexec.limits import joined, pack

__all__ = ["EVENT_OF_STATUS", "SOURCE", "WriterEvents", "encode", "publish_all", "queued", "schedule_fired"]

log = logging.getLogger("agentexec.events")
_warn = RateLimited(log, interval=60.0)

#: the event a lifecycle line of each status announces
EVENT_OF_STATUS: dict[Status, str] = {
    Status.QUEUED: "task.queued",
    Status.RUNNING: "task.started",
    Status.COMPLETE: "task.completed",
    Status.ERROR: "task.failed",
    Status.CANCELED: "task.cancelled",
}
SOURCE = "agentexec"
#: events a worker keeps while its event backend is unreachable
MAX_PENDING = 10_000
#: lifecycle events of one type sent as one message, at most
BATCH_EVENTS = 200
#: seconds a worker gathers events before publishing them (see ``WriterEvents``)
LINGER = 0.05
#: tasks whose shared part of their events a worker keeps at most (each is dropped at the
#: task's final event; past this, all are: a task released for a retry may never come back)
MAX_TASK_PARTS = 10_000
#: waits between tries of a publish that failed transiently
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0

_CHANNEL = "events:"


def encode(event_type: str, payload: Mapping[str, Any]) -> str:
    """The message ``ax.events.publish(event_type, payload, source="agentexec")`` sends."""
    return json.dumps({
        "event_type": event_type,
        "payload": payload,
        "source": SOURCE,
        "time": datetime.now(UTC).isoformat(),
        "uuid": uuid.uuid4().hex,
    }, default=str)


def task_payload(
    agent_id: UUID, task_name: str, status: Status, metadata: Mapping[str, Any] | None,
    message: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "task_id": str(agent_id),
        "agent_id": str(agent_id),
        "task_name": task_name,
        "status": status.value,
        "metadata": dict(metadata) if metadata else {},
    }
    if message is not None and status in (Status.ERROR, Status.CANCELED):
        payload["message"] = message
    return payload


#: task names as JSON (a task's part of its rows, :func:`_row_part`)
_names: dict[str, str] = {}


def _fast_json() -> Callable[[Any], str]:
    """``json.dumps(value, default=str)`` for values without cycles (a task's metadata, which
    was JSON already), with one C encoder made once: ``json.dumps`` makes one per call, which
    cost three times the encoding of a small dict."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)  # CPython's, not in typeshed
    if make is None:
        return json.JSONEncoder(default=str).encode
    chunks = make(
        None, str, encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    return lambda value: "".join(chunks(value, 0))  # type: ignore[no-any-return]


_json_of = _fast_json()

#: statuses whose event ends a task's events (a worker drops what it kept for the task)
_FINAL = (Status.COMPLETE, Status.ERROR, Status.CANCELED)


class _Kind(NamedTuple):
    """What one status's events share: one lookup per event (``Enum.value`` and an enum's hash
    are Python calls)."""

    event_type: str
    final: bool
    with_message: bool


_KINDS: dict[Status, _Kind] = {
    status: _Kind(event, status in _FINAL, status in (Status.ERROR, Status.CANCELED))
    for status, event in EVENT_OF_STATUS.items()
}


#: the format of a compact message of task events (:func:`task_rows_message`), and the status
#: of each event type
ROWS_FORMAT = "agentexec.task-events/1"
STATUS_OF_EVENT: dict[str, Status] = {event: status for status, event in EVENT_OF_STATUS.items()}

#: a task event as it is sent (:func:`encode_task`, :class:`WriterEvents`): the JSON text of
#: its row, ``[part, message, time, n]``, the task's part (``[agent_id as 32 hex digits, name,
#: metadata]``, encoded once for all its events), the message (task.failed and task.cancelled,
#: else null), the time (ISO) and the uuid's counter (:class:`_EventIds`)
_Row = str


class _EventIds:
    """Event ``uuid``s: 80 random bits drawn once per process, then a 48-bit counter: unique
    like ``uuid4().hex`` across processes (drawn again in a forked child) at a fraction of its
    cost."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(10).hex()
        #: the counter (an event's uuid takes it modulo 2**48: :func:`expand_rows`)
        self.counter = itertools.count()



_ids = _EventIds()


def _row_part(agent_id: UUID, task_name: str, metadata: Mapping[str, Any] | None) -> str:
    """The JSON of a task's part of its rows (:data:`_Row`)."""
    name = _names.get(task_name)
    if name is None:
        name = json.dumps(task_name)
        if len(_names) < 10_000:
            _names[task_name] = name
    return f'["{agent_id.hex}",{name},{_json_of(metadata) if metadata else "null"}]'


def encode_task(
    agent_id: UUID, task_name: str, status: Status, metadata: Mapping[str, Any] | None,
    message: str | None = None, when: str | None = None,
) -> str:
    """The row (:data:`_Row`) of ``encode(EVENT_OF_STATUS[status], task_payload(...))``, for
    :func:`publish_all`; ``when``: the event's time (ISO), now by default."""
    kind = _KINDS[status]
    text = json.dumps(message) if message is not None and kind.with_message else "null"
    when = when or datetime.now(UTC).isoformat()
    return f'[{_row_part(agent_id, task_name, metadata)},{text},"{when}",{next(_ids.counter)}]'


async def publish_all(backend: EventBackend, events: Sequence[tuple[str, str]]) -> None:
    """Publish ``(event_type, message)`` pairs (a task event's message: its row,
    :func:`encode_task`): the events of one type as one message, a JSON array (task events: a
    compact message of rows, :func:`task_rows_message`; ``ax.events`` subscribers receive each
    event: :func:`agentexec.events.decode_all`), of at most ``BATCH_EVENTS`` events and about
    ``CONF.max_event_bytes``. Every subscriber of
    the events stream reads every message of it, whatever it listens to (on Redis), so a message
    per event would cost each of them per task. A backend with
    :class:`~agentexec.backends.MixedPublish` gets the messages of every type in one write."""
    messages = _messages(events)
    if isinstance(backend, MixedPublish):
        await backend.publish_mixed(messages)
        return
    for channel, data in messages:
        await backend.publish(channel, data)


def _messages(events: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(channel, message)``: the events of each type joined (see :func:`publish_all`)."""
    by_type: dict[str, list[str]] = {}
    for event_type, data in events:
        by_type.setdefault(event_type, []).append(data)
    messages: list[tuple[str, str]] = []
    for event_type, datas in by_type.items():
        if event_type in STATUS_OF_EVENT:
            _rows_messages(event_type, datas, messages)
        else:
            _join(event_type, datas, messages)
    return messages


def _join(event_type: str, datas: list[str], out: list[tuple[str, str]]) -> None:
    """Append to ``out`` the messages of ``datas``, events of one type, grouped as
    :func:`agentexec.limits.pack` groups them: ``BATCH_EVENTS`` at a time while they fit
    ``CONF.max_event_bytes`` (the usual case, measured by one ``sum``), then by ``pack``."""
    channel = _CHANNEL + event_type
    limit = CONF.max_event_bytes
    for start in range(0, len(datas), BATCH_EVENTS):
        chunk = datas[start:start + BATCH_EVENTS]
        if sum(map(len, chunk)) + len(chunk) > limit:
            out.extend((channel, joined(group)) for group in pack(datas[start:], limit, BATCH_EVENTS))
            return
        out.append((channel, joined(chunk)))


def _backend() -> EventBackend:
    from agentexec.runtime import get_backends

    return get_backends().events


async def publish_now(events: Sequence[tuple[str, str]], backend: EventBackend | None = None) -> None:
    """Publish ``events`` once; a failure is logged (at most once a minute), never raised: a
    lifecycle event never fails the enqueue or the task it tells of."""
    if not events:
        return
    try:
        await publish_all(backend or _backend(), events)
    except Exception as exc:
        _warn.warning("lifecycle", "lifecycle events: %d not published (%s)", len(events), describe(exc))


def queued(items: Iterable[tuple[UUID, str, Mapping[str, Any] | None]]) -> list[tuple[str, str]]:
    """The ``task.queued`` events of ``(agent_id, task_name, metadata)`` (none when off)."""
    if not CONF.lifecycle_events:
        return []
    return [("task.queued", encode_task(agent_id, name, Status.QUEUED, metadata)) for agent_id, name, metadata in items]


def schedule_fired(
    name: str, task_name: str, agent_id: UUID, tick: datetime, queue_name: str,
    metadata: Mapping[str, Any] | None,
) -> list[tuple[str, str]]:
    """``schedule.fired`` and the fired task's ``task.queued`` (none when off)."""
    if not CONF.lifecycle_events:
        return []
    fired = {
        "schedule": name, "task_name": task_name, "agent_id": str(agent_id),
        "task_id": str(agent_id), "scheduled_for": tick.isoformat(), "queue": queue_name,
    }
    return [("schedule.fired", encode("schedule.fired", fired)), *queued([(agent_id, task_name, metadata)])]


def task_rows_message(event_type: str, rows: Sequence[_Row]) -> str:
    """One message of task events of one type: their rows in one JSON object,
    which :func:`agentexec.events.decode_all` expands into the events :func:`encode_task`
    would have made one by one. A worker sends two events per task: an event's full payload
    repeats its task's ids and the source (300+ bytes, built per event), a row is ~100 bytes
    and its task's part is encoded once."""
    return (
        f'{{"format":"{ROWS_FORMAT}","event_type":"{event_type}","source":"{SOURCE}",'
        f'"ids":"{_ids.prefix}","rows":[{",".join(rows)}]}}'
    )


def expand_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a :func:`task_rows_message` (parsed), each as ``encode`` would have sent
    it; ``ValueError``/``TypeError`` for a malformed one."""
    try:
        event_type, prefix, rows = data["event_type"], str(data["ids"]), data["rows"]
        status = STATUS_OF_EVENT[event_type]
    except (KeyError, TypeError) as missing:
        raise ValueError(f"not a message of task events ({missing!r} missing)") from None
    events = []
    for (hex_id, name, metadata), message, when, n in rows:
        payload = task_payload(UUID(hex=hex_id), name, status, metadata, message)
        events.append({
            "event_type": event_type, "payload": payload, "source": data.get("source", SOURCE),
            "time": when, "uuid": f"{prefix}{int(n) & 0xFFFFFFFFFFFF:012x}",
        })
    return events


def _windows(batch: list[tuple[str, _Row, str]]) -> list[tuple[int, list[tuple[str, str]]]]:
    """``batch`` (event type, row, task) cut into windows, each as its count of events and its
    messages: one per event type (and per ``BATCH_EVENTS``, :func:`_rows_messages`), the types
    in the order they first appear in the window, so that the messages keep every task's
    events in the order they happened (queued, started, completed): a window is cut only where
    a task's event would land in a type that comes before (or is) the type of its previous
    event in the window. So a worker's started and completed events of a whole ``LINGER`` are
    two messages, not two per commit. One pass over ``batch``."""
    windows: list[tuple[int, list[tuple[str, str]]]] = []
    types: list[str] = []  # the window's event types, in order
    groups: list[list[_Row]] = []  # their events
    rank: dict[str, int] = {}  # event type -> its place in the window
    last: dict[str, int] = {}  # task -> the place of its latest event in the window
    count = 0
    for event_type, row, task in batch:
        place = rank.get(event_type)
        if place is None:  # a new type comes after every other: never a cut
            place = rank[event_type] = len(types)
            types.append(event_type)
            groups.append([row])
        elif last.get(task, -1) >= place:
            windows.append(_window(count, types, groups))
            types, groups, rank, last, count = [event_type], [[row]], {event_type: 0}, {}, 0
            place = 0
        else:
            groups[place].append(row)
        last[task] = place
        count += 1
    if count:
        windows.append(_window(count, types, groups))
    return windows


def _window(count: int, types: list[str], groups: list[list[_Row]]) -> tuple[int, list[tuple[str, str]]]:
    messages: list[tuple[str, str]] = []
    for event_type, rows in zip(types, groups, strict=True):
        _rows_messages(event_type, rows, messages)
    return count, messages


def _rows_messages(event_type: str, rows: list[_Row], out: list[tuple[str, str]]) -> None:
    """Append to ``out`` the messages of ``rows``, events of one type: ``BATCH_EVENTS`` at a
    time while they fit ``CONF.max_event_bytes`` (the usual case, measured by one ``sum``),
    else grouped as :func:`agentexec.limits.pack` groups them (a row alone goes as it is)."""
    channel = _CHANNEL + event_type
    limit = CONF.max_event_bytes - 200  # the message's own fields
    for start in range(0, len(rows), BATCH_EVENTS):
        chunk = rows[start:start + BATCH_EVENTS]
        if sum(map(len, chunk)) + len(chunk) > limit:
            out.extend((channel, task_rows_message(event_type, group))
                       for group in pack(rows[start:], limit, BATCH_EVENTS))
            return
        out.append((channel, task_rows_message(event_type, chunk)))


class WriterEvents:
    """A worker writer's events: :meth:`written` takes the lines just committed (on the
    writer's event loop, never blocking); a background task publishes what gathered over
    ``LINGER`` seconds (and while the previous publish was on the wire), one message per event
    type. So an event is out at most ~50 ms after its line is committed, and a busy worker
    sends a few messages every 50 ms whatever its throughput. An event is kept as its row
    (:data:`_Row`: one f-string, its task's part made once) and sent in a compact message of its
    window (:func:`task_rows_message`, a join).
    """

    def __init__(self, backend: EventBackend | None = None) -> None:
        self._backend = backend
        #: (event type, row, the task's part), in commit order
        self._pending: list[tuple[str, _Row, str]] = []
        #: the part of its rows each task's events share (:func:`_row_part`), made at its first
        #: event (task.started) and dropped at its final one: by ``agent_id.int`` (a UUID's hash
        #: is a Python call)
        self._parts: dict[int, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0
        #: the time part of rows (``,"<ISO time>",``), made at most once a millisecond: commits
        #: can be a line or two each, and a datetime's isoformat cost as much as the row
        self._tail = ""
        self._tail_at = 0.0
        self._closing = asyncio.Event()

    @classmethod
    def create(cls) -> WriterEvents | None:
        """The writer's events, or ``None`` when ``CONF.lifecycle_events`` is off."""
        return cls() if CONF.lifecycle_events else None

    def written(
        self,
        entries: Iterable[LogEntry | None],
        names: Mapping[UUID, str],
        metadata: Mapping[UUID, dict[str, Any]],
    ) -> None:
        """Lifecycle lines are committed: queue their events (only the worker's own tasks,
        whose names it knows, are told of)."""
        tail = ""  # the time of the lines of one commit, in their rows
        parts = self._parts
        pending = self._pending
        kinds = _KINDS
        counter = _ids.counter
        for entry in entries:
            if entry is None or (kind := kinds.get(entry.status)) is None:  # type: ignore[arg-type]
                continue
            agent_id = entry.agent_id
            key = agent_id.int
            part = parts.pop(key, None) if kind.final else parts.get(key)
            if part is None:
                name = names.get(agent_id)
                if name is None:
                    continue
                part = _row_part(agent_id, name, metadata.get(agent_id))
                if not kind.final:
                    if len(parts) >= MAX_TASK_PARTS:
                        parts.clear()
                    parts[key] = part
            if not tail:
                tail = self._time_tail()
            # encode_task's row, inline: with a task's part kept and a commit's time shared, an
            # event costs this one f-string
            message = json.dumps(entry.message) if kind.with_message else "null"
            pending.append((kind.event_type, f"[{part},{message}{tail}{next(counter)}]", part))
        if not tail:
            return
        if len(self._pending) > MAX_PENDING:
            over = len(self._pending) - MAX_PENDING
            del self._pending[:over]
            self._dropped += over
            _warn.warning("dropped", "lifecycle events: the event backend is behind; %d oldest dropped so far",
                          self._dropped)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._publish())

    def _time_tail(self) -> str:
        now = time.monotonic()
        if now - self._tail_at >= 0.001:
            self._tail = f',"{datetime.now(UTC).isoformat()}",'
            self._tail_at = now
        return self._tail

    async def _publish(self) -> None:
        delay = FIRST_BACKOFF
        while self._pending:
            if not self._closing.is_set():
                # let the commits of the next LINGER seconds join: each message wakes every
                # subscriber of the bus, so a busy worker sends a few per LINGER, not one per commit
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), LINGER)
            batch, self._pending = self._pending, []
            backend = self._backend or _backend()
            try:
                windows = _windows(batch)
                if isinstance(backend, MixedPublish):
                    # every window in one write, in order (all or none: retried whole)
                    await backend.publish_mixed([m for _, messages in windows for m in messages])
                    batch, windows = [], []
                for count, messages in windows:
                    for channel, data in messages:
                        await backend.publish(channel, data)
                    del batch[:count]  # published: not retried
                delay = FIRST_BACKOFF
            except Exception as exc:
                if not is_transient(exc, backend):
                    _warn.warning("refused", "lifecycle events: %d not published (%s)", len(batch), describe(exc))
                    continue
                _warn.warning("down", "lifecycle events: the event backend is unreachable (%s); retrying",
                              describe(exc))
                self._pending[:0] = batch
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Publish what is still pending (the worker is stopping), for at most ``timeout``."""
        self._closing.set()
        task = self._task
        if task is None or task.done():
            if not self._pending:
                return
            task = self._task = asyncio.get_running_loop().create_task(self._publish())
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            log.warning("lifecycle events: %d not published before the worker stopped", len(self._pending))
