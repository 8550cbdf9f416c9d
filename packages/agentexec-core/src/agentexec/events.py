"""``ax.events``: an event bus between tasks, pools and apps.

::

    await ax.events.publish("email.batch_processed", {"batch_size": 10}, source="email-agent")

    async with ax.events.subscribe("email.*") as events:   # or: async for ... in subscribe(...)
        async for event in events:
            print(event.event_type, event.source, event.payload, event.id)

Events travel on the process's event backend, channel ``events:<event_type>``, as JSON
``{"event_type", "payload", "source", "time", "uuid"}``, or as a JSON array of such objects
(several events of one type published as one message: the pool's lifecycle events,
:mod:`agentexec.task_events`; a subscriber receives each, all with the message's ``id``). Patterns use ``*`` as a wildcard
(``"email.*"``, ``"*.failed"``, ``"*"``).

Synchronous code (a sync task handler, a script, a WSGI view) has :func:`publish_sync` and
:func:`listen`::

    ax.events.publish_sync("email.batch_processed", {"batch_size": 10}, source="email-agent")

    with ax.events.listen("email.*") as events:
        event = events.get(timeout=1.0)         # a BusEvent, or None after 1 s
        for event in events: ...                # or block for each one

Resuming: every received event carries the backend's ``id``. A subscriber that reconnects with
``subscribe(pattern, last_id=event.id)`` first receives what was published after that event
(backends that keep history do: Redis streams within their retention bound, the SQL backend,
the in-memory one), then live events. If events after ``last_id`` were trimmed away
(``CONF.events_retention``), entering the subscription raises :class:`EventGapError` instead of
silently replaying what is left; subscribe again with its ``resume_id`` to accept the gap.

Limits: a published message (its JSON) is at most ``CONF.max_event_bytes``, else
:class:`agentexec.limits.TooLargeError` (a ``ValueError``); a message a subscriber cannot read
(not JSON, nested too deep) is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.from_thread
from pydantic import BaseModel, Field

from agentexec._ratelimit import RateLimited
from agentexec.backends import Event, EventBackend, EventGapError
from agentexec.limits import check_size, utf8_size
from agentexec.task_events import ROWS_FORMAT, expand_rows

__all__ = [
    "CHANNEL_PREFIX",
    "BusEvent",
    "EventGapError",
    "Listener",
    "Subscription",
    "listen",
    "publish",
    "publish_sync",
    "subscribe",
]

log = logging.getLogger("agentexec.events")

CHANNEL_PREFIX = "events:"


class BusEvent(BaseModel):
    """One event received from the bus."""

    event_type: str
    payload: Any = None
    source: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    #: unique per publish (survives redelivery; use it to de-duplicate)
    uuid: str = Field(default_factory=lambda: uuid.uuid4().hex)
    #: the backend's position of this event: pass it as ``last_id`` to resume after it
    id: str | None = None

    @property
    def source_agent(self) -> str | None:
        """The spec's name for ``source``."""
        return self.source


def _backend(backend: EventBackend | None) -> EventBackend:
    if backend is not None:
        return backend
    from agentexec.runtime import get_backends

    return get_backends().events


def _check_type(event_type: str) -> str:
    if not isinstance(event_type, str) or not event_type.strip():
        raise ValueError(f"event_type must be a non-empty string such as 'email.processed', got {event_type!r}")
    return event_type


async def publish(
    event_type: str,
    payload: Mapping[str, Any] | BaseModel | Any = None,
    *,
    source: str | None = None,
    backend: EventBackend | None = None,
    source_agent: str | None = None,
) -> str | None:
    """Publish an event; returns its id in the backend (``None`` if the backend keeps no ids).

    ``payload`` is any JSON value or a pydantic model (sent as its JSON form). ``source_agent``
    is the scheduler spec's name for ``source``.
    """
    _check_type(event_type)
    if source_agent is not None:
        if source is not None and source != source_agent:
            raise TypeError("give source= or source_agent= (the same thing), not both")
        source = source_agent
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    event = BusEvent(event_type=event_type, payload=payload, source=source)
    try:
        data = event.model_dump_json(exclude={"id"})
    except Exception as exc:  # a payload that is not JSON-serialisable
        raise TypeError(f"event {event_type!r}: the payload must be JSON-serialisable ({exc})") from None
    from agentexec.config import CONF

    if len(data) > CONF.max_event_bytes // 4:
        # raises TooLargeError (a ValueError): nothing is published
        check_size(f"event {event_type!r}", utf8_size(data), CONF.max_event_bytes, "max_event_bytes")
    return await _backend(backend).publish(CHANNEL_PREFIX + event_type, data)


def subscribe(
    *patterns: str, last_id: str | None = None, backend: EventBackend | None = None
) -> Subscription:
    """Events whose type matches any of ``patterns`` (default: all), published from now on —
    or, with ``last_id``, from just after that event."""
    for pattern in patterns:
        _check_type(pattern)
    return Subscription(patterns or ("*",), last_id, backend)


class Subscription:
    """An async iterator of :class:`BusEvent` that is also an async context manager.

    ``async with`` closes the backend subscription as soon as the block ends; a bare
    ``async for`` closes it when the loop is left (``break`` included) only once the iterator is
    collected, so prefer ``async with`` in long-lived processes. ``last_id`` is always the id of
    the last event received, ready for a resume.
    """

    def __init__(
        self, patterns: tuple[str, ...], last_id: str | None, backend: EventBackend | None
    ) -> None:
        self.patterns = patterns
        self.last_id = last_id
        self._backend = backend
        self._stack: AsyncExitStack | None = None
        self._events: AsyncIterator[Event] | None = None
        #: the rest of a message holding several events, and that message's id
        self._batch: list[BusEvent] = []
        self._batch_id: str | None = None

    async def open(self) -> Subscription:
        """Start listening (``async with`` and the first iteration call this)."""
        if self._stack is None:
            stack = AsyncExitStack()
            backend = _backend(self._backend)
            channels = [CHANNEL_PREFIX + p for p in self.patterns]
            self._events = await stack.enter_async_context(
                backend.subscribe(channels, last_id=self.last_id)
            )
            self._stack = stack
        return self

    async def aclose(self) -> None:
        stack, self._stack, self._events = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Subscription:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> BusEvent:
        if self._batch:
            event = self._batch.pop(0)
            if not self._batch and self._batch_id is not None:
                self.last_id = self._batch_id  # resuming from it now skips none of the batch
            return event
        await self.open()
        assert self._events is not None
        while True:
            try:
                raw = await self._events.__anext__()
            except StopAsyncIteration:
                await self.aclose()
                raise
            events = decode_all(raw)
            if len(events) > 1:
                self._batch, self._batch_id = events[1:], raw.id
                return events[0]
            if raw.id is not None:
                self.last_id = raw.id
            if events:
                return events[0]


# -- synchronous API ------------------------------------------------------------------------
T = TypeVar("T")


def _in_worker_thread() -> bool:
    """Whether this thread was started by an event loop (``anyio.to_thread``: a sync task
    handler runs in one), so calls can go to that loop, where its backends live."""
    try:
        anyio.from_thread.run_sync(lambda: None)
    except RuntimeError:
        return False
    return True


def _refuse_on_a_running_loop(name: str, instead: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"ax.events.{name}() blocks, and this thread runs an event loop: use {instead} here"
    )


class _SyncLoop:
    """One event loop on a daemon thread per process, for sync calls made outside any loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._pid = 0

    def portal(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._portal is None or self._pid != os.getpid():  # a forked child starts anew
                self._portal, self._pid = self._start(), os.getpid()
            return self._portal

    @staticmethod
    def _start() -> anyio.from_thread.BlockingPortal:
        ready = threading.Event()
        box: list[anyio.from_thread.BlockingPortal] = []

        async def main() -> None:
            async with anyio.from_thread.BlockingPortal() as portal:
                box.append(portal)
                ready.set()
                await portal.sleep_until_stopped()

        threading.Thread(target=anyio.run, args=(main,), name="agentexec-sync", daemon=True).start()
        if not ready.wait(10):  # pragma: no cover - a thread that cannot start
            raise RuntimeError("agentexec: the event loop thread for sync calls did not start")
        return box[0]


_SYNC = _SyncLoop()


def _call(func: Callable[[], Coroutine[Any, Any, T]], name: str, instead: str) -> T:
    """Run ``func`` to completion from sync code: on the loop that started this thread (a sync
    handler's worker loop), else on the process's sync loop."""
    if _in_worker_thread():
        result: T = anyio.from_thread.run(func)
        return result
    _refuse_on_a_running_loop(name, instead)
    value: T = _SYNC.portal().call(func)
    return value


def publish_sync(
    event_type: str,
    payload: Mapping[str, Any] | BaseModel | Any = None,
    *,
    source: str | None = None,
    backend: EventBackend | None = None,
    source_agent: str | None = None,
) -> str | None:
    """:func:`publish` for synchronous code: a sync task handler (which runs in a worker
    thread: the event goes out on its worker's loop), a script, a WSGI view. Returns the
    event's id. Inside ``async def`` code, ``await ax.events.publish(...)`` instead."""
    _check_type(event_type)
    call = functools.partial(
        publish, event_type, payload, source=source, backend=backend, source_agent=source_agent
    )
    return _call(call, "publish_sync", "await ax.events.publish(...)")


def listen(
    *patterns: str, last_id: str | None = None, backend: EventBackend | None = None
) -> Listener:
    """:func:`subscribe` for synchronous code::

        with ax.events.listen("email.*") as events:
            event = events.get(timeout=1.0)   # a BusEvent, or None when none came in time
            for event in events: ...          # blocks for each event

    Listening starts when the ``with`` block is entered (events published before are not
    received, unless ``last_id`` names the event to resume after)."""
    for pattern in patterns:
        _check_type(pattern)
    return Listener(patterns or ("*",), last_id, backend)


_END = object()


class Listener:
    """A blocking subscription: ``get(timeout)`` or iteration; a context manager.

    Events are read by a task on an event loop (the worker's loop inside a sync handler, else
    the process's sync loop) into a queue this object reads, so a ``get`` that times out loses
    nothing. ``last_id`` is the id of the last event returned, ready for a resume.
    """

    def __init__(
        self, patterns: tuple[str, ...], last_id: str | None, backend: EventBackend | None
    ) -> None:
        self.patterns = patterns
        self.last_id = last_id
        self._backend = backend
        self._events: queue.Queue[Any] = queue.Queue()
        self._stop: Callable[[], object] | None = None
        self._ended = False

    def open(self) -> Listener:
        """Start listening (entering the ``with`` block does this)."""
        if self._stop is not None:
            return self
        opened: Future[None] = Future()
        if _in_worker_thread():
            task = anyio.from_thread.run_sync(
                lambda: asyncio.get_running_loop().create_task(self._pump(opened))
            )
            self._stop = lambda: anyio.from_thread.run_sync(task.cancel)
        else:
            _refuse_on_a_running_loop("listen", "async with ax.events.subscribe(...)")
            future = _SYNC.portal().start_task_soon(self._pump, opened)
            self._stop = future.cancel
        opened.result()  # subscribed (or the error that prevented it)
        return self

    async def _pump(self, opened: Future[None]) -> None:
        subscription = Subscription(self.patterns, self.last_id, self._backend)
        try:
            async with subscription:
                opened.set_result(None)
                async for event in subscription:
                    self._events.put(event)
        except BaseException as exc:
            if not opened.done():
                opened.set_exception(exc)
            elif not isinstance(exc, anyio.get_cancelled_exc_class() | GeneratorExit):
                self._events.put(exc)
            raise
        finally:
            self._events.put(_END)

    def get(self, timeout: float | None = None) -> BusEvent | None:
        """The next event; ``None`` if none arrives within ``timeout`` seconds (``None``: wait
        as long as it takes) or the subscription has ended."""
        self.open()
        if self._ended:
            return None
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._ended = True
            return None
        if isinstance(item, BaseException):
            raise item
        event: BusEvent = item
        if event.id is not None:
            self.last_id = event.id
        return event

    def __iter__(self) -> Iterator[BusEvent]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def __enter__(self) -> Listener:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def decode(raw: Event) -> BusEvent | None:
    """The :class:`BusEvent` in a backend message (the first, for a message holding several:
    see :func:`decode_all`), or ``None`` if it is not one."""
    events = decode_all(raw)
    return events[0] if events else None


def decode_all(raw: Event) -> list[BusEvent]:
    """The :class:`BusEvent` (or, for a JSON array or a worker's compact message of task events,
    the events) in a backend message; none if
    it is not one: a malformed message (not JSON, not an object, nested too deep to parse,
    fields of the wrong type) is skipped with a warning, at most one a minute per channel, and
    never stops a subscriber."""
    event_type = raw.channel[len(CHANNEL_PREFIX):] if raw.channel.startswith(CHANNEL_PREFIX) else raw.channel
    try:
        data = json.loads(raw.data)
        if isinstance(data, dict) and data.get("format") == ROWS_FORMAT:
            data = expand_rows(data)  # a worker's lifecycle events of one type (task_events)
        items = data if isinstance(data, list) and data else [data]
        events = []
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
            item.setdefault("event_type", event_type)
            item["id"] = raw.id
            events.append(BusEvent.model_validate(item))
        return events
    except (ValueError, TypeError, RecursionError) as exc:
        reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc).replace("\n", " ")
        _skipped.warning(
            raw.channel, "events: skipping a malformed message on %s (id %s): %s",
            raw.channel, raw.id, reason[:300],
        )
        return []


_skipped = RateLimited(log, interval=60.0)
