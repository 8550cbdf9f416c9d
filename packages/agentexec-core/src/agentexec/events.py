"""``ax.events``: an event bus between tasks, pools and apps.

::

    await ax.events.publish("email.batch_processed", {"batch_size": 10}, source="email-agent")

    async with ax.events.subscribe("email.*") as events:   # or: async for ... in subscribe(...)
        async for event in events:
            print(event.event_type, event.source, event.payload, event.id)

Events travel on the process's event backend, channel ``events:<event_type>``, as JSON
``{"event_type", "payload", "source", "time", "uuid"}``. Patterns use ``*`` as a wildcard
(``"email.*"``, ``"*.failed"``, ``"*"``).

Resuming: every received event carries the backend's ``id``. A subscriber that reconnects with
``subscribe(pattern, last_id=event.id)`` first receives what was published after that event
(backends that keep history do: Redis streams within their retention bound, the SQL backend,
the in-memory one), then live events.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from pydantic import BaseModel, Field

from agentexec.backends import Event, EventBackend

__all__ = ["CHANNEL_PREFIX", "BusEvent", "Subscription", "publish", "subscribe"]

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
        await self.open()
        assert self._events is not None
        while True:
            try:
                raw = await self._events.__anext__()
            except StopAsyncIteration:
                await self.aclose()
                raise
            event = decode(raw)
            if raw.id is not None:
                self.last_id = raw.id
            if event is not None:
                return event


def decode(raw: Event) -> BusEvent | None:
    """The :class:`BusEvent` in a backend message, or ``None`` (logged) if it is not one."""
    event_type = raw.channel[len(CHANNEL_PREFIX):] if raw.channel.startswith(CHANNEL_PREFIX) else raw.channel
    try:
        data = json.loads(raw.data)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        data.setdefault("event_type", event_type)
        data["id"] = raw.id
        return BusEvent.model_validate(data)
    except ValueError as exc:
        log.warning("events: ignoring a malformed message on %s (id %s): %s", raw.channel, raw.id, exc)
        return None
