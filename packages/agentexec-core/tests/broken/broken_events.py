"""Event backends with one bug each, built on the memory reference bus."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from agentexec.backends import Event
from agentexec.limits import Stream, retention, stream_of
from agentexec.memory import events as memory_events
from agentexec.memory.events import MemoryEvents


class LazySubscribeEvents(MemoryEvents):
    """Subscribes lazily, on the first ``__anext__``: events published in between are lost."""

    @asynccontextmanager
    async def subscribe(
        self, patterns: Sequence[str], *, last_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        outer = self

        async def iterate() -> AsyncIterator[Event]:
            async with MemoryEvents.subscribe(outer, patterns, last_id=last_id) as stream:
                async for event in stream:
                    yield event

        yield iterate()
        await asyncio.sleep(0)


class LateSubscriberGetsHistoryEvents(MemoryEvents):
    """A subscription without ``last_id`` starts from the beginning of the stream (XREAD from
    ``0`` instead of ``$``): a dashboard opened late replays every old log line as new."""

    def subscribe(self, patterns: Sequence[str], *, last_id: str | None = None):  # type: ignore[no-untyped-def]
        return super().subscribe(patterns, last_id=last_id or "0")


class ReplayIncludesLastIdEvents(MemoryEvents):
    """Replay starts *at* ``last_id`` (XRANGE from the id, inclusive): a reconnecting client sees
    the last event it had twice."""

    def subscribe(self, patterns: Sequence[str], *, last_id: str | None = None):  # type: ignore[no-untyped-def]
        return super().subscribe(patterns, last_id=None if last_id is None else str(int(last_id) - 1))


class _Publisher(MemoryEvents):
    def _deliver_to(self, channel: str, subs: list[Any]) -> list[Any]:
        return [s for s in subs if memory_events._matches(channel, s[0])]

    async def publish(self, channel: str, data: str) -> str | None:
        with self._lock:
            event = Event(channel, data, str(next(self._ids)))
            stream = stream_of(channel)
            history = self._history[stream]
            history.append(event)
            keep = retention(stream)
            while len(history) > keep:
                self._dropped[stream] = int(history.popleft().id or 0)
            subs = self._deliver_to(channel, list(self._subs))
        for _patterns, loop, queue in subs:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        return event.id


class SharedControlStreamEvents(MemoryEvents):
    """Keeps ``control:*`` channels in the events stream (two streams, as before the control
    stream): a burst of lifecycle events pushes a cancel request out of what can be resumed."""

    async def publish(self, channel: str, data: str) -> str | None:
        with self._lock:
            event = Event(channel, data, str(next(self._ids)))
            stream: Stream = "logs" if stream_of(channel) == "logs" else "events"
            history = self._history[stream]
            history.append(event)
            while len(history) > retention(stream):
                self._dropped[stream] = int(history.popleft().id or 0)
            # replay reads the streams the patterns name: give it the control messages kept
            self._history["control"] = deque(e for e in history if stream_of(e.channel) == "control")
            subs = [s for s in self._subs if memory_events._matches(channel, s[0])]
        for _patterns, loop, queue in subs:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        return event.id


class PrefixPatternEvents(_Publisher):
    """Treats every pattern as a prefix (``startswith``): ``agentexec:logs:1`` also gets
    ``agentexec:logs:10``."""

    def _deliver_to(self, channel: str, subs: list[Any]) -> list[Any]:
        return [s for s in subs if any(channel.startswith(p.rstrip("*")) for p in s[0])]


class FirstSubscriberOnlyEvents(_Publisher):
    """Delivers each event to the first matching subscriber only (a consumer group)."""

    def _deliver_to(self, channel: str, subs: list[Any]) -> list[Any]:
        return super()._deliver_to(channel, subs)[:1]


class PublishManyReversedEvents(MemoryEvents):
    """``publish_many`` (worker log forwarding) publishes the batch in reverse order (RPUSH of a
    list built with LPUSH): a task's log lines arrive upside down."""

    async def publish_many(self, channel: str, data: Sequence[str]) -> None:
        await super().publish_many(channel, list(reversed(data)))


class PublishManyFirstOnlyEvents(MemoryEvents):
    """``publish_many`` publishes the first message of the batch only."""

    async def publish_many(self, channel: str, data: Sequence[str]) -> None:
        await super().publish_many(channel, list(data)[:1])


class PublishMixedByChannelEvents(MemoryEvents):
    """``publish_mixed`` (lifecycle events) publishes channel by channel, each channel's messages
    together: across channels, the list's order is lost."""

    async def publish_mixed(self, messages: Sequence[tuple[str, str]]) -> None:
        for channel in dict.fromkeys(c for c, _ in messages):
            for c, data in messages:
                if c == channel:
                    await self.publish(c, data)


class ReplayAllChannelsEvents(MemoryEvents):
    """Replay after ``last_id`` ignores the patterns: a client resuming its task's stream gets
    every other task's events too."""

    @asynccontextmanager
    async def subscribe(
        self, patterns: Sequence[str], *, last_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        async with super().subscribe(patterns, last_id=None) as stream:
            if last_id is None:
                yield stream
                return
            with self._lock:
                old = sorted(
                    (e for history in self._history.values() for e in history if int(e.id or 0) > int(last_id)),
                    key=lambda e: int(e.id or 0),
                )

            async def iterate() -> AsyncIterator[Event]:
                for event in old:
                    yield event
                async for event in stream:
                    yield event

            yield iterate()
