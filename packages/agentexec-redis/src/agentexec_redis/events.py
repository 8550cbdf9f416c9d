"""``RedisEvents``: event channels on three Redis streams (:mod:`agentexec.limits`).

``logs:<queue>`` channels (worker log records) go to ``{agentexec:events}:logs``, ``control:*``
channels (cancel requests, shutdown broadcasts, schedule changes) to
``{agentexec:events}:control``, every other channel (user and lifecycle events) to
``agentexec:events``; each is ``XADD ... MAXLEN ~`` its own retention
(:func:`agentexec.limits.retention`), so a burst of logs never evicts an event, nor a burst of
events a control message, and a worker's ``control:cancel`` listener reads the control stream
only (it read, and decoded, every lifecycle event of the bus before). Fields ``channel`` and ``data``; the stream id is the event id. A subscription
tails the stream(s) its patterns can match with one ``XREAD BLOCK`` and keeps the events whose
channel matches one of its ``fnmatch`` patterns. Unlike pub/sub, a subscriber that reconnects (or
passes ``last_id``) resumes where it was; if that point was trimmed away, ``subscribe`` raises
:class:`agentexec.backends.EventGapError` instead of silently skipping what was lost.
"""

from __future__ import annotations

import fnmatch
import functools
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from agentexec._redact import mask_url
from agentexec.backends import Event, EventGapError
from agentexec.config import CONF
from agentexec.limits import Stream, retention, stream_of, streams_for

from agentexec_redis import _streams, keys
from agentexec_redis._lua import Script
from agentexec_redis._resilience import TRANSIENT, is_transient, outage, redis_backoff, retrying
from agentexec_redis.client import async_client, block_for, close_redis, resolve_url

#: how long one XREAD blocks (at most: see ``block_for``); short enough that a pool being
#: closed is noticed soon
_BLOCK_MS = 5000

STREAM_KEYS: dict[Stream, str] = {"events": keys.EVENTS, "logs": keys.LOGS, "control": keys.CONTROL}
#: each stream's place in :data:`PUBLISH`'s KEYS and ARGV
_SLOT: dict[Stream, str] = {"events": "1", "logs": "2", "control": "3"}

#: Every publish, of one message or of many of any streams (the streams and the sequence
#: share one hash slot), all or none. KEYS: the events stream, the logs stream, the control
#: stream, the shared id sequence. ARGV: the three streams' max lengths, then stream (its KEYS
#: index), channel and data of each message. Appends each message with an id greater than every
#: id issued in any stream (server time in ms, or the last id's ms with the next sequence
#: number), so ids order the streams as one: a subscriber of several resumes after one id and
#: misses nothing, and gets nothing twice. Returns the last id.
PUBLISH = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms, seq = now, 0
local last = redis.call('GET', KEYS[4])
if last then
  local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
  lms, lseq = tonumber(lms), tonumber(lseq)
  if lms >= now then ms, seq = lms, lseq + 1 end
end
for k = 1, 3 do
  local top = redis.call('XREVRANGE', KEYS[k], '+', '-', 'COUNT', 1)[1]
  if top then  -- written by someone else since (an older agentexec: XADD *)
    local tms, tseq = string.match(top[1], '^(%d+)-(%d+)$')
    tms, tseq = tonumber(tms), tonumber(tseq)
    if tms > ms or (tms == ms and tseq >= seq) then ms, seq = tms, tseq + 1 end
  end
end
local id
for i = 4, #ARGV, 3 do
  local k = tonumber(ARGV[i])
  id = string.format('%d-%d', ms, seq)
  redis.call('XADD', KEYS[k], 'MAXLEN', '~', ARGV[k], id, 'channel', ARGV[i + 1], 'data', ARGV[i + 2])
  seq = seq + 1
end
redis.call('SET', KEYS[4], id)
return id
""")


class _Subscription:
    """The async iterator a subscription yields: matching events, in stream order, forever."""

    def __init__(self, url: str, patterns: tuple[str, ...], cursors: dict[str, str]) -> None:
        self.url = url
        self.patterns = patterns
        self.cursors = cursors
        self._buffer: deque[Event] = deque()

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Event:
        backoff = redis_backoff()
        while not self._buffer:
            try:
                client = async_client(self.url)
                block_ms = int(block_for(client, _BLOCK_MS / 1000) * 1000)
                entries = await _streams.read_streams(client, dict(self.cursors), block_ms)
            except TRANSIENT as exc:
                outage.failed("event subscription", exc)
                await backoff.sleep()
                continue
            outage.ok()
            backoff.reset()
            for key, entry_id, fields in entries:
                self.cursors[key] = entry_id
                channel = fields.get(b"channel", b"").decode("utf-8", errors="replace")
                if any(fnmatch.fnmatchcase(channel, p) for p in self.patterns):
                    data = fields.get(b"data", b"").decode("utf-8", errors="replace")
                    self._buffer.append(Event(channel, data, entry_id))
        return self._buffer.popleft()


class RedisEvents:
    """Publish/subscribe on three Redis streams; ``RedisEvents(url)``."""

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """:class:`agentexec.backends.TransientErrors`: Redis unreachable or not serving
        writes for now (a worker waits), as opposed to a reply refusing the data."""
        return is_transient(exc)

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)

    def __repr__(self) -> str:
        return f"RedisEvents({mask_url(self.url)!r})"

    @staticmethod
    def _window() -> float:
        return float(max(CONF.redis_pool_timeout, 1))

    async def publish(self, channel: str, data: str) -> str | None:
        return await self._publish(channel, [data])

    async def publish_many(self, channel: str, data: Sequence[str]) -> None:
        """``publish`` of each message, in order, in one round trip (one script call per 500)."""
        for start in range(0, len(data), 500):
            await self._publish(channel, data[start:start + 500])

    async def publish_mixed(self, messages: Sequence[tuple[str, str]]) -> None:
        """:class:`agentexec.backends.MixedPublish`: ``publish`` of each ``(channel, data)``,
        in order, in one script call whatever their channels and streams (all or none): a
        worker's lifecycle events of a window cost one round trip, and wake each subscriber
        once, not once per message."""
        await self._append(messages)

    async def _publish(self, channel: str, data: Sequence[str]) -> str | None:
        return await self._append([(channel, item) for item in data])

    async def _append(self, messages: Sequence[tuple[str, str]]) -> str | None:
        """One :data:`PUBLISH` call; the id of the last message."""
        if not messages:
            return None
        script_keys = [STREAM_KEYS["events"], STREAM_KEYS["logs"], STREAM_KEYS["control"], keys.EVENT_SEQ]
        args: list[str | int] = [retention("events"), retention("logs"), retention("control")]
        for channel, data in messages:
            args += [_SLOT[stream_of(channel)], channel, data]
        entry_id = await retrying(
            "publish", lambda: PUBLISH(async_client(self.url), script_keys, args), self._window()
        )
        return _streams.text(entry_id)

    @asynccontextmanager
    async def subscribe(
        self, patterns: Sequence[str], *, last_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """Once entered, every later event on a matching channel is yielded (after ``last_id``
        when given: a replay of the retained history, or :class:`EventGapError` when events
        after it were trimmed away)."""
        if isinstance(patterns, str):
            raise TypeError(f"patterns must be a sequence of patterns, e.g. [{patterns!r}]")
        streams = sorted(streams_for(patterns))
        client = async_client(self.url)
        cursors: dict[str, str] = {}
        if last_id is None:
            # the positions are fixed here, at enter: nothing published after this is missed
            for stream in streams:
                key = STREAM_KEYS[stream]
                cursors[key] = await retrying(
                    "subscribe", functools.partial(_streams.last_id, client, key), self._window()
                )
        else:
            try:
                _streams.parse_id(str(last_id))
            except ValueError:
                raise ValueError(
                    f"last_id={last_id!r} is not an id of this event backend: pass an Event.id "
                    f"received from RedisEvents (a stream id such as '1700000000000-0'), or None "
                    f"for new events only"
                ) from None
            for stream in streams:
                key = STREAM_KEYS[stream]
                resume = await retrying(
                    "subscribe",
                    functools.partial(_streams.trimmed_after, client, key, str(last_id), retention(stream)),
                    self._window(),
                )
                if resume is not None:
                    raise EventGapError(str(last_id), resume, stream)
                cursors[key] = str(last_id)
        yield _Subscription(self.url, tuple(patterns), cursors)

    async def close(self) -> None:
        await close_redis(self.url)
