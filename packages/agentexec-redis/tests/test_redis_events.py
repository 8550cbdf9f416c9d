"""RedisEvents: one bounded stream, channel patterns, stream ids as event ids."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from agentexec.backends import EventGapError
from agentexec.config import CONF
from agentexec_redis import keys
from agentexec_redis.client import get_redis
from agentexec_redis.events import RedisEvents

pytestmark = pytest.mark.anyio


async def test_events_are_stream_entries_and_ids_resume(redis_url: str, unique_name: str) -> None:
    events = RedisEvents(redis_url)
    first = await events.publish(f"logs:{unique_name}", "[Worker 0] hello")
    r = await get_redis(redis_url)
    entry = await r.xrange(keys.LOGS, min=first, max=first)  # logs have their own stream
    assert entry and entry[0][1] == {b"channel": f"logs:{unique_name}".encode(), b"data": b"[Worker 0] hello"}
    second = await events.publish(f"control:{unique_name}", "shutdown")
    await events.publish(f"events:{unique_name}:done", "{}")
    with anyio.fail_after(5):
        async with events.subscribe([f"control:{unique_name}", f"events:{unique_name}:*"],
                                    last_id=first) as stream:
            got = [await anext(stream), await anext(stream)]
    assert (got[0].channel, got[0].id) == (f"control:{unique_name}", second)
    assert got[1].channel == f"events:{unique_name}:done"


async def test_the_stream_is_bounded(redis_url: str) -> None:
    events = RedisEvents(redis_url)
    r = await get_redis(redis_url)
    async with r.pipeline(transaction=False) as pipe:
        for i in range(CONF.events_retention + 500):
            pipe.xadd(keys.EVENTS, {"channel": "bench:fill", "data": str(i)},
                      maxlen=CONF.events_retention, approximate=True)
        await pipe.execute()
    await events.publish("bench:fill", "last")
    # MAXLEN ~ trims whole macro nodes (100 entries by default), never far past the bound
    assert await r.xlen(keys.EVENTS) <= CONF.events_retention + 200


async def test_logs_never_evict_events(redis_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """25,000 log lines once pushed a user event out of the one shared stream; a subscriber
    resuming before it got nothing and no error."""
    monkeypatch.setattr(CONF, "logs_retention", 100)
    events = RedisEvents(redis_url)
    before = await events.publish(f"events:{unique_name}.before", "{}")
    kept = await events.publish(f"events:{unique_name}.kept", "{}")
    await events.publish_many(f"logs:{unique_name}", [f"line {i}" for i in range(1000)])
    assert before is not None and kept is not None
    with anyio.fail_after(5):
        async with events.subscribe([f"events:{unique_name}.*"], last_id=before) as stream:
            assert (await anext(stream)).id == kept
    r = await get_redis(redis_url)
    assert await r.xlen(keys.LOGS) <= 300, "the logs stream is trimmed to its own retention"


async def test_a_trimmed_resume_point_is_an_error_not_silence(
    redis_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CONF, "logs_retention", 100)
    events = RedisEvents(redis_url)
    channel = f"logs:{unique_name}"
    first = await events.publish(channel, "first")
    await events.publish_many(channel, [f"line {i}" for i in range(1000)])
    assert first is not None
    with pytest.raises(EventGapError) as gap:
        async with events.subscribe([channel], last_id=first):
            pass
    assert gap.value.stream == "logs" and gap.value.last_id == first
    # resuming where it says gets what is kept, without an error
    with anyio.fail_after(5):
        async with events.subscribe([channel], last_id=gap.value.resume_id) as stream:
            oldest = await anext(stream)
    r = await get_redis(redis_url)
    assert oldest.id == (await r.xrange(keys.LOGS, count=1))[0][0].decode()
    with pytest.raises(ValueError, match="not an id of this event backend"):
        async with events.subscribe([channel], last_id="$"):
            pass


async def test_an_idle_subscriber_logs_no_warning(redis_server_url: str | None, caplog: pytest.LogCaptureFixture) -> None:
    """Every XREAD blocks for less than the client's socket timeout: 0.5 s here (5 s by
    default). A 5 s block against the 5 s default timed out, redis-py retried it 3 times, and
    every idle subscriber logged 'Redis unavailable ... Timeout reading' every 20 s; at 0.5 s
    the same happens within 2 s, so 4.5 s of silence shows the relation holds."""
    if redis_server_url is None:
        pytest.skip("needs a real Redis server")
    url = redis_server_url + ("&" if "?" in redis_server_url else "?") + "socket_timeout=0.5"
    events = RedisEvents(url)
    with caplog.at_level(logging.INFO, "agentexec"):
        async with events.subscribe(["events:nobody-publishes-here"]) as stream:
            with anyio.move_on_after(4.5):
                await anext(stream)
    await events.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_publish_mixed_is_one_call_across_both_streams(redis_url: str, unique_name: str) -> None:
    """``publish_mixed`` (a worker's lifecycle events of a window) is one script call, even
    when its messages go to both streams: each lands in its own stream, the ids in one
    increasing sequence, so a subscriber of both gets them in the order given."""
    events = RedisEvents(redis_url)
    log_channel, event_channel = f"logs:{unique_name}", f"events:{unique_name}.done"
    before = await events.publish(event_channel, "before")
    assert before is not None
    await events.publish_mixed([(event_channel, "e1"), (log_channel, "l1"), (event_channel, "e2")])
    r = await get_redis(redis_url)
    logged = await r.xrange(keys.LOGS, min=before)
    assert [fields[b"data"] for _, fields in logged if fields[b"channel"] == log_channel.encode()] == [b"l1"]
    with anyio.fail_after(5):
        async with events.subscribe([log_channel, f"events:{unique_name}.*"], last_id=before) as stream:
            got = [await anext(stream) for _ in range(3)]
    assert [(e.channel, e.data) for e in got] == [(event_channel, "e1"), (log_channel, "l1"), (event_channel, "e2")]


async def test_control_channels_have_a_stream_of_their_own(redis_url: str, unique_name: str) -> None:
    """Every worker's ``control:cancel`` listener once read (and decoded) every lifecycle
    event of the shared stream: control channels now go to their own, which it reads alone."""
    events = RedisEvents(redis_url)
    r = await get_redis(redis_url)
    cancel = await events.publish(f"control:{unique_name}", "cancel")
    event = await events.publish(f"events:{unique_name}", "{}")
    assert [e[0].decode() for e in await r.xrange(keys.CONTROL, min=cancel, max=cancel)] == [cancel]
    assert await r.xrange(keys.EVENTS, min=cancel, max=cancel) == []
    assert [e[0].decode() for e in await r.xrange(keys.EVENTS, min=event, max=event)] == [event]
    # resume from just before it (not "0-0": other tests' trims of the shared control stream
    # would make that a gap)
    ms, seq = (int(part) for part in cancel.split("-"))
    before = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-18446744073709551615"
    async with events.subscribe([f"control:{unique_name}"], last_id=before) as stream:
        sub: Any = stream
        assert list(sub.cursors) == [keys.CONTROL], "a control subscription reads the control stream only"
        with anyio.fail_after(5):
            assert (await anext(stream)).id == cancel
