"""``EventsSuite``: the executable contract of :class:`agentexec.backends.EventBackend` and of
its optional capabilities (``publish_many``; ``replay`` with ``last_id``).

Timing attributes (seconds; raising ``delivery_within_s`` above the kit's default needs a
``timing_reason``, see :class:`agentexec.testing.Suite`):

- ``delivery_within_s`` (0.5): how long a subscriber may take to see a published event
- ``quiet_s`` (0.2): how long the suite listens to be sure nothing else arrives (larger is
  stricter and slower; not a threshold)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import pytest

from agentexec.backends import Event, EventGapError
from agentexec.config import CONF
from agentexec.testing._helpers import unique
from agentexec.testing._suite import Suite


async def _nothing_within(stream: AsyncIterator[Event], seconds: float) -> Event | None:
    with anyio.move_on_after(seconds):
        return await anext(stream)
    return None


@pytest.mark.anyio
class EventsSuite(Suite):
    """Subclass and provide an ``events`` fixture that yields a fresh backend::

        class TestAcmeEvents(EventsSuite):
            @pytest.fixture
            async def events(self):
                e = AcmeEvents("acme://localhost")
                yield e
                await e.close()

    Every test uses its own channel prefix, so a shared server is fine.
    """

    delivery_within_s: ClassVar[float] = 0.5
    quiet_s: ClassVar[float] = 0.2
    _timings = ("delivery_within_s",)

    async def _next(self, stream: AsyncIterator[Event]) -> Event:
        with anyio.fail_after(self.delivery_within_s):
            return await anext(stream)

    @pytest.fixture
    def events(self) -> Any:
        pytest.fail("EventsSuite needs an `events` fixture that yields your event backend")

    @pytest.fixture
    def prefix(self) -> str:
        return unique("axkit:")

    async def test_subscriber_receives_only_matching_channels(self, events: Any, prefix: str) -> None:
        """A pattern subscription gets events of matching channels only, with channel and data.

        Troubleshooting: ``*`` is a wildcard (PSUBSCRIBE / fnmatch semantics); filter server- or
        client-side, but never deliver non-matching channels.
        """
        async with events.subscribe([f"{prefix}:logs:*"]) as stream:
            await events.publish(f"{prefix}:other", "no")
            await events.publish(f"{prefix}:logs:1", "yes")
            event = await self._next(stream)
            assert (event.channel, event.data) == (f"{prefix}:logs:1", "yes")
            assert await _nothing_within(stream, self.quiet_s) is None

    async def test_subscription_is_live_once_entered(self, events: Any, prefix: str) -> None:
        """An event published right after ``__aenter__`` returns is delivered.

        Troubleshooting: finish subscribing (wait for the server's confirmation, or note the
        stream position) inside ``__aenter__``, not lazily on the first ``__anext__``.
        """
        async with events.subscribe([f"{prefix}:now"]) as stream:
            await events.publish(f"{prefix}:now", "first")
            assert (await self._next(stream)).data == "first"

    async def test_several_patterns_and_exact_channels(self, events: Any, prefix: str) -> None:
        """One subscription may combine exact channel names and wildcard patterns.

        Troubleshooting: subscribe to every pattern given, and treat a pattern without ``*`` as
        an exact channel name.
        """
        async with events.subscribe([f"{prefix}:exact", f"{prefix}:wild:*"]) as stream:
            await events.publish(f"{prefix}:exact", "a")
            await events.publish(f"{prefix}:wild:x", "b")
            await events.publish(f"{prefix}:exactly", "no")
            got = {(await self._next(stream)).data, (await self._next(stream)).data}
            assert got == {"a", "b"}
            assert await _nothing_within(stream, self.quiet_s) is None

    async def test_every_subscriber_receives_each_event(self, events: Any, prefix: str) -> None:
        """Two subscriptions to one channel both receive every event.

        Troubleshooting: fan out to every subscriber; a consumer group that splits events
        between subscribers is the wrong primitive here.
        """
        channel = f"{prefix}:fan"
        async with events.subscribe([channel]) as one, events.subscribe([channel]) as two:
            await events.publish(channel, "hello")
            assert (await self._next(one)).data == "hello"
            assert (await self._next(two)).data == "hello"

    async def test_events_arrive_in_publish_order(self, events: Any, prefix: str) -> None:
        """Events of one channel are delivered in the order they were published.

        Troubleshooting: deliver from one ordered stream per subscription; do not fan out to
        concurrent tasks.
        """
        channel = f"{prefix}:order"
        async with events.subscribe([channel]) as stream:
            for i in range(20):
                await events.publish(channel, str(i))
            assert [(await self._next(stream)).data for _ in range(20)] == [str(i) for i in range(20)]

    async def test_publish_without_subscribers_is_fine(self, events: Any, prefix: str) -> None:
        """Publishing to a channel nobody listens to neither fails nor blocks.

        Troubleshooting: fire-and-forget; do not wait for a receiver.
        """
        with anyio.fail_after(self.delivery_within_s):
            await events.publish(f"{prefix}:nobody", "x")

    async def test_resume_after_last_id(self, events: Any, prefix: str) -> None:
        """With ``last_id``, a subscriber first gets the events published after that id.

        Needs ``Capabilities.replay``. Troubleshooting: ``publish`` returns the event's id
        (a stream id, a row id) and ``subscribe(last_id=...)`` reads history after it (XREAD from
        that id) before live events; ``Event.id`` carries the id.
        """
        self.require("replay", events)
        channel = f"{prefix}:replay"
        first = await events.publish(channel, "e1")
        assert first is not None, "publish must return an id when replay is supported"
        await events.publish(channel, "e2")
        await events.publish(f"{prefix}:unrelated", "no")
        await events.publish(channel, "e3")
        async with events.subscribe([channel], last_id=first) as stream:
            replayed = [await self._next(stream), await self._next(stream)]
            assert [e.data for e in replayed] == ["e2", "e3"]
            assert all(e.id is not None for e in replayed)
            await events.publish(channel, "e4")
            assert (await self._next(stream)).data == "e4"

    async def test_a_late_subscriber_gets_only_later_events(self, events: Any, prefix: str) -> None:
        """A subscription (without ``last_id``) starts at the present: events published before
        it was entered are not delivered, the ones after are.

        Troubleshooting: start a stream read at the newest entry (``XREAD ... $``, the current
        max row id), not at the beginning; replay only when ``last_id`` is given.
        """
        channel = f"{prefix}:late"
        for i in range(3):
            await events.publish(channel, f"old{i}")
        async with events.subscribe([channel]) as stream:
            await events.publish(channel, "new")
            event = await self._next(stream)
            assert event.data == "new", f"a late subscriber got {event.data!r}, published before it subscribed"
            assert await _nothing_within(stream, self.quiet_s) is None

    async def test_publish_many_delivers_each_message_in_order(self, events: Any, prefix: str) -> None:
        """``publish_many`` has the effect of ``publish`` on each message, in order.

        Needs ``Capabilities.publish_many``. Troubleshooting: send the batch in one ordered
        round trip (a pipeline of XADD/PUBLISH, one multi-row INSERT ordered by id).
        """
        self.require("publish_many", events)
        channel = f"{prefix}:batch"
        async with events.subscribe([channel]) as stream:
            await events.publish_many(channel, [f"line{i}" for i in range(5)])
            await events.publish_many(channel, [])
            await events.publish(channel, "after")
            got = [await self._next(stream) for _ in range(6)]
            assert [e.data for e in got] == [f"line{i}" for i in range(5)] + ["after"]
            assert {e.channel for e in got} == {channel}

    async def test_publish_mixed_delivers_each_message_in_order(self, events: Any, prefix: str) -> None:
        """``publish_mixed`` has the effect of ``publish`` on each ``(channel, data)``, in order,
        whatever the channels: a subscriber of several of them gets them in that order, a
        subscriber of one only its own.

        Needs ``Capabilities.publish_mixed``. Troubleshooting: one ordered write for the whole
        batch (a pipeline, one multi-row INSERT ordered like the list), not one per channel.
        """
        self.require("publish_mixed", events)
        a, b = f"{prefix}:mixed-a", f"{prefix}:mixed-b"
        async with events.subscribe([a, b]) as both, events.subscribe([b]) as only_b:
            await events.publish_mixed([(a, "a1"), (b, "b1"), (a, "a2"), (b, "b2")])
            await events.publish_mixed([])
            await events.publish(a, "after")
            got = [await self._next(both) for _ in range(5)]
            assert [(e.channel, e.data) for e in got] == [(a, "a1"), (b, "b1"), (a, "a2"), (b, "b2"), (a, "after")]
            assert [(await self._next(only_b)).data for _ in range(2)] == ["b1", "b2"]
            assert await _nothing_within(only_b, self.quiet_s) is None

    async def test_close_then_use_again(self, events: Any, prefix: str) -> None:
        """After ``close`` the backend still works: the next subscribe/publish reconnects.

        Troubleshooting: let ``close`` release connections and create them again lazily.
        """
        await events.close()
        channel = f"{prefix}:reopened"
        async with events.subscribe([channel]) as stream:
            await events.publish(channel, "again")
            assert (await self._next(stream)).data == "again"

    async def test_logs_never_evict_events(self, events: Any, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """``logs:*`` channels are kept apart from the others, each with its own retention: a
        burst of log records never pushes an event out of what a subscriber can resume from.

        Needs ``Capabilities.replay``. Troubleshooting: route channels with
        ``agentexec.limits.stream_of(channel)`` to three streams (or tables, or partitions) and
        trim each to ``agentexec.limits.retention(stream)``.
        """
        self.require("replay")
        monkeypatch.setattr(CONF, "logs_retention", 50)
        before = await events.publish(f"events:{prefix}.before", "{}")
        await events.publish(f"events:{prefix}.kept", "{}")
        for start in range(0, 400, 100):
            for i in range(start, start + 100):
                await events.publish(f"logs:{prefix}", str(i))
        async with events.subscribe([f"events:{prefix}.*"], last_id=before) as stream:
            assert (await self._next(stream)).channel == f"events:{prefix}.kept"

    async def test_events_never_evict_control_messages(
        self, events: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``control:*`` channels (cancel requests, shutdown broadcasts) are kept apart from
        the other events, with their own retention: a burst of (lifecycle) events never pushes
        a control message out of what a subscriber can resume from; and a subscription that
        spans both still gets their messages in publish order.

        Needs ``Capabilities.replay``. Troubleshooting: route channels with
        ``agentexec.limits.stream_of(channel)`` to three streams (events, logs, control) and
        trim each to ``agentexec.limits.retention(stream)``; a subscription reads every stream
        ``agentexec.limits.streams_for(patterns)`` names, in id order.
        """
        self.require("replay")
        monkeypatch.setattr(CONF, "events_retention", 50)
        control, event = f"control:{prefix}", f"events:{prefix}"
        before = await events.publish(f"{control}.before", "{}")
        await events.publish(f"{control}.kept", "{}")
        for start in range(0, 400, 100):
            for i in range(start, start + 100):
                await events.publish(event, str(i))
        async with events.subscribe([f"{control}.*"], last_id=before) as stream:
            assert (await self._next(stream)).channel == f"{control}.kept"
        async with events.subscribe([f"{control}.*", f"{event}.*"]) as both:
            for channel in (f"{event}.a", f"{control}.b", f"{event}.c", f"{control}.d"):
                await events.publish(channel, channel)
            got = [(await self._next(both)).data for _ in range(4)]
            assert got == [f"{event}.a", f"{control}.b", f"{event}.c", f"{control}.d"]

    async def test_a_trimmed_resume_point_raises_event_gap_error(
        self, events: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``subscribe(last_id=...)`` whose events were trimmed away raises ``EventGapError``
        (silently replaying what is left would hide the loss); subscribing again with its
        ``resume_id`` accepts the gap and gets what is kept.

        Needs ``Capabilities.replay``. Troubleshooting: on subscribe, compare ``last_id`` with
        the oldest id the stream still keeps (and whether it ever dropped any); raise
        ``EventGapError(last_id, resume_id, stream)`` with the id just before the oldest kept.
        """
        self.require("replay")
        monkeypatch.setattr(CONF, "logs_retention", 50)
        channel = f"logs:{prefix}"
        first = await events.publish(channel, "first")
        for i in range(400):
            await events.publish(channel, str(i))
        with pytest.raises(EventGapError) as gap:
            async with events.subscribe([channel], last_id=first):
                pass
        async with events.subscribe([channel], last_id=gap.value.resume_id) as stream:
            assert (await self._next(stream)).data != "first"
