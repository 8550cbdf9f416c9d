"""``EventsSuite``: the executable contract of :class:`agentexec.backends.EventBackend`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from agentexec.backends import Event, EventGapError
from agentexec.config import CONF
from agentexec.testing._helpers import unique
from agentexec.testing._suite import Suite

#: how long a subscriber may take to see a published event
DELIVERY = 2.0


async def _next(stream: AsyncIterator[Event]) -> Event:
    with anyio.fail_after(DELIVERY):
        return await anext(stream)


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
            event = await _next(stream)
            assert (event.channel, event.data) == (f"{prefix}:logs:1", "yes")
            assert await _nothing_within(stream, 0.2) is None

    async def test_subscription_is_live_once_entered(self, events: Any, prefix: str) -> None:
        """An event published right after ``__aenter__`` returns is delivered.

        Troubleshooting: finish subscribing (wait for the server's confirmation, or note the
        stream position) inside ``__aenter__``, not lazily on the first ``__anext__``.
        """
        async with events.subscribe([f"{prefix}:now"]) as stream:
            await events.publish(f"{prefix}:now", "first")
            assert (await _next(stream)).data == "first"

    async def test_several_patterns_and_exact_channels(self, events: Any, prefix: str) -> None:
        """One subscription may combine exact channel names and wildcard patterns.

        Troubleshooting: subscribe to every pattern given, and treat a pattern without ``*`` as
        an exact channel name.
        """
        async with events.subscribe([f"{prefix}:exact", f"{prefix}:wild:*"]) as stream:
            await events.publish(f"{prefix}:exact", "a")
            await events.publish(f"{prefix}:wild:x", "b")
            await events.publish(f"{prefix}:exactly", "no")
            got = {(await _next(stream)).data, (await _next(stream)).data}
            assert got == {"a", "b"}
            assert await _nothing_within(stream, 0.2) is None

    async def test_every_subscriber_receives_each_event(self, events: Any, prefix: str) -> None:
        """Two subscriptions to one channel both receive every event.

        Troubleshooting: fan out to every subscriber; a consumer group that splits events
        between subscribers is the wrong primitive here.
        """
        channel = f"{prefix}:fan"
        async with events.subscribe([channel]) as one, events.subscribe([channel]) as two:
            await events.publish(channel, "hello")
            assert (await _next(one)).data == "hello"
            assert (await _next(two)).data == "hello"

    async def test_events_arrive_in_publish_order(self, events: Any, prefix: str) -> None:
        """Events of one channel are delivered in the order they were published.

        Troubleshooting: deliver from one ordered stream per subscription; do not fan out to
        concurrent tasks.
        """
        channel = f"{prefix}:order"
        async with events.subscribe([channel]) as stream:
            for i in range(20):
                await events.publish(channel, str(i))
            assert [(await _next(stream)).data for _ in range(20)] == [str(i) for i in range(20)]

    async def test_publish_without_subscribers_is_fine(self, events: Any, prefix: str) -> None:
        """Publishing to a channel nobody listens to neither fails nor blocks.

        Troubleshooting: fire-and-forget; do not wait for a receiver.
        """
        with anyio.fail_after(DELIVERY):
            await events.publish(f"{prefix}:nobody", "x")

    async def test_resume_after_last_id(self, events: Any, prefix: str) -> None:
        """With ``last_id``, a subscriber first gets the events published after that id.

        Needs ``Capabilities.replay``. Troubleshooting: ``publish`` returns the event's id
        (a stream id, a row id) and ``subscribe(last_id=...)`` reads history after it (XREAD from
        that id) before live events; ``Event.id`` carries the id.
        """
        self.require("replay")
        channel = f"{prefix}:replay"
        first = await events.publish(channel, "e1")
        assert first is not None, "publish must return an id when replay is supported"
        await events.publish(channel, "e2")
        await events.publish(f"{prefix}:unrelated", "no")
        await events.publish(channel, "e3")
        async with events.subscribe([channel], last_id=first) as stream:
            replayed = [await _next(stream), await _next(stream)]
            assert [e.data for e in replayed] == ["e2", "e3"]
            assert all(e.id is not None for e in replayed)
            await events.publish(channel, "e4")
            assert (await _next(stream)).data == "e4"

    async def test_logs_never_evict_events(self, events: Any, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """``logs:*`` channels are kept apart from the others, each with its own retention: a
        burst of log records never pushes an event out of what a subscriber can resume from.

        Needs ``Capabilities.replay``. Troubleshooting: route channels with
        ``agentexec.limits.stream_of(channel)`` to two streams (or tables, or partitions) and
        trim each to ``CONF.logs_retention`` / ``CONF.events_retention``.
        """
        self.require("replay")
        monkeypatch.setattr(CONF, "logs_retention", 50)
        before = await events.publish(f"events:{prefix}.before", "{}")
        await events.publish(f"events:{prefix}.kept", "{}")
        for start in range(0, 400, 100):
            for i in range(start, start + 100):
                await events.publish(f"logs:{prefix}", str(i))
        async with events.subscribe([f"events:{prefix}.*"], last_id=before) as stream:
            assert (await _next(stream)).channel == f"events:{prefix}.kept"

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
            assert (await _next(stream)).data != "first"
