"""``RedisEvents``: every channel on one Redis stream (``agentexec:events``).

``publish`` is ``XADD ... MAXLEN ~ 10000`` with fields ``channel`` and ``data``; the stream id
is the event id. A subscription tails the stream with ``XREAD BLOCK`` and keeps the events
whose channel matches one of its ``fnmatch`` patterns. Unlike pub/sub, a subscriber that
reconnects (or passes ``last_id``) resumes where it was, within the retained history.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from agentexec.backends import Event
from agentexec.config import CONF

from agentexec_redis import _streams, keys
from agentexec_redis._resilience import TRANSIENT, Backoff, is_transient, outage, retrying
from agentexec_redis.client import async_client, close_redis, resolve_url

#: how long one XREAD blocks; short enough that a pool being closed is noticed soon
_BLOCK_MS = 5000


class _Subscription:
    """The async iterator a subscription yields: matching events, in stream order, forever."""

    def __init__(self, url: str, patterns: tuple[str, ...], cursor: str) -> None:
        self.url = url
        self.patterns = patterns
        self.cursor = cursor
        self._buffer: deque[Event] = deque()

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Event:
        backoff = Backoff()
        while not self._buffer:
            try:
                entries = await _streams.read_after(
                    async_client(self.url), keys.EVENTS, self.cursor, _BLOCK_MS
                )
            except TRANSIENT as exc:
                outage.failed("event subscription", exc)
                await backoff.sleep()
                continue
            outage.ok()
            backoff.reset()
            for entry_id, fields in entries:
                self.cursor = entry_id
                channel = fields.get(b"channel", b"").decode("utf-8", errors="replace")
                if any(fnmatch.fnmatchcase(channel, p) for p in self.patterns):
                    data = fields.get(b"data", b"").decode("utf-8", errors="replace")
                    self._buffer.append(Event(channel, data, entry_id))
        return self._buffer.popleft()


class RedisEvents:
    """Publish/subscribe on a Redis stream; ``RedisEvents(url)``."""

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """:class:`agentexec.backends.TransientErrors`: Redis unreachable or not serving
        writes for now (a worker waits), as opposed to a reply refusing the data."""
        return is_transient(exc)

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)

    @staticmethod
    def _window() -> float:
        return float(max(CONF.redis_pool_timeout, 1))

    async def publish(self, channel: str, data: str) -> str | None:
        fields = {"channel": channel, "data": data}
        return await retrying(
            "publish", lambda: _streams.append(async_client(self.url), keys.EVENTS, fields), self._window()
        )

    async def publish_many(self, channel: str, data: Sequence[str]) -> None:
        """``publish`` of each message, in order, in one pipelined round trip."""
        if not data:
            return

        async def send() -> None:
            async with async_client(self.url).pipeline(transaction=False) as pipe:
                for item in data:
                    pipe.xadd(
                        keys.EVENTS, {"channel": channel, "data": item},
                        maxlen=keys.STREAM_MAXLEN, approximate=True,
                    )
                await pipe.execute()

        await retrying("publish", send, self._window())

    @asynccontextmanager
    async def subscribe(
        self, patterns: Sequence[str], *, last_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """Once entered, every later event on a matching channel is yielded (after ``last_id``
        when given: a replay of the retained history)."""
        if isinstance(patterns, str):
            raise TypeError(f"patterns must be a sequence of patterns, e.g. [{patterns!r}]")
        cursor = last_id
        if cursor is None:
            # the position is fixed here, at enter: nothing published after this is missed
            cursor = await retrying(
                "subscribe", lambda: _streams.last_id(async_client(self.url), keys.EVENTS), self._window()
            )
        yield _Subscription(self.url, tuple(patterns), cursor)

    async def close(self) -> None:
        await close_redis(self.url)
