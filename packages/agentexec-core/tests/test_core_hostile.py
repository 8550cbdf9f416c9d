"""Hostile data is inert: poison events, control characters, rate-limited warnings."""

from __future__ import annotations

import logging

import pytest

import agentexec as ax
from agentexec._ratelimit import RateLimited
from agentexec.backends import Event
from agentexec.cli._ops import printable
from agentexec.events import decode
from agentexec.memory.events import MemoryEvents

DEEP = 100_000


def poison(depth: int = DEEP) -> str:
    return '{"payload": ' + "[" * depth + "]" * depth + "}"


def test_a_deeply_nested_event_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "agentexec.events"):
        assert decode(Event("events:poison", poison(), "7")) is None
    assert "skipping a malformed message on events:poison (id 7): nested too deep" in caplog.text


@pytest.mark.anyio
async def test_a_subscriber_skips_poison_and_gets_the_next_event() -> None:
    bus = MemoryEvents()
    async with ax.events.subscribe("t.*", backend=bus) as events:
        await bus.publish("events:t.bad", poison())
        await bus.publish("events:t.bad", "[" * 500)  # not JSON at all
        await ax.events.publish("t.good", {"n": 1}, backend=bus)
        event = await anext(events)
    assert (event.event_type, event.payload) == ("t.good", {"n": 1})


def test_printable_escapes_what_a_terminal_would_act_on() -> None:
    hostile = "ok\x1b[2J\x1b]0;owned\x07\r\x08\x9b31m\u202egnp.exe\tend\nnext"
    shown = printable(hostile)
    assert shown == "ok\\x1b[2J\\x1b]0;owned\\x07\\x0d\\x08\\x9b31m\\u202egnp.exe\tend\nnext"
    assert printable(None) == "" and printable("plain ünïcode ✓") == "plain ünïcode ✓"


def test_rate_limited_warnings(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimited(logging.getLogger("agentexec.test"), interval=60)
    with caplog.at_level(logging.WARNING, "agentexec.test"):
        assert limited.warning("k", "first %d", 1)
        assert not limited.warning("k", "second")
        assert limited.warning("other", "other kind")
        limited._last["k"] -= 61
        assert limited.warning("k", "third")
    assert [r.getMessage() for r in caplog.records] == [
        "first 1", "other kind", "third (1 more like this in the last 60s+ not shown)",
    ]
