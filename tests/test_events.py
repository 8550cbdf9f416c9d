"""ax.events: pattern subscriptions and resume-from-last-id, on every event backend we ship."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import agentexec as ax
import anyio
import pytest
from agentexec.backends import EventBackend
from agentexec.events import BusEvent, Subscription
from agentexec.memory.events import MemoryEvents
from agentexec.runtime import build_backends, set_backends
from pydantic import BaseModel

pytestmark = pytest.mark.anyio


BACKENDS = ["memory", "sqlite", "postgresql", "redis"]


@pytest.fixture(params=BACKENDS)
async def bus(request: pytest.FixtureRequest, unique_name: str, tmp_path: Path) -> AsyncIterator[EventBackend]:
    backend: EventBackend
    if request.param == "memory":
        backend = MemoryEvents(f"memory://{unique_name}")
    elif request.param == "sqlite":
        from agentexec_sqlalchemy.transport.events import SQLEvents

        backend = SQLEvents(f"sqlite:///{tmp_path}/events.db")
    elif request.param == "postgresql":
        from agentexec_sqlalchemy.transport.events import SQLEvents

        backend = SQLEvents(request.getfixturevalue("postgres_server_url"))
    else:
        from agentexec_redis.events import RedisEvents

        url = request.getfixturevalue("redis_server_url")
        if url is None:
            pytest.skip("no Redis server reachable (CI always has one)")
        backend = RedisEvents(url)
    yield backend
    await backend.close()


@pytest.fixture
def t(unique_name: str) -> Callable[[str], str]:
    """Event types (and patterns) of this test only: shared databases see other tests' events."""
    return lambda name: f"{unique_name}.{name}"


async def take(sub: Subscription, count: int, timeout: float = 5.0) -> list[BusEvent]:
    got: list[BusEvent] = []
    with anyio.fail_after(timeout):
        async for event in sub:
            got.append(event)
            if len(got) == count:
                break
    return got


async def test_pattern_subscription_receives_matching_events_only(bus: EventBackend, t: Callable[[str], str]) -> None:
    async with ax.events.subscribe(t("email.*"), backend=bus) as sub:
        for name in ("email.sent", "task.completed", "email.batch.processed", "emailx.sent",
                     "system.startup", "email.end"):
            await ax.events.publish(t(name), {"n": name}, source="test", backend=bus)
        got = await take(sub, 3)
    assert [e.event_type for e in got] == [t("email.sent"), t("email.batch.processed"), t("email.end")]
    assert [e.payload for e in got] == [{"n": "email.sent"}, {"n": "email.batch.processed"}, {"n": "email.end"}]


async def test_several_patterns_and_a_catch_all(bus: EventBackend, t: Callable[[str], str]) -> None:
    async with ax.events.subscribe(t("*.failed"), t("system.*"), backend=bus) as some, \
            ax.events.subscribe(t("*"), backend=bus) as every:
        for name in ("task.failed", "task.completed", "system.shutdown", "email.failed"):
            await ax.events.publish(t(name), None, backend=bus)
        assert [e.event_type for e in await take(some, 3)] == [
            t("task.failed"), t("system.shutdown"), t("email.failed")
        ]
        assert len(await take(every, 4)) == 4


async def test_event_fields_and_publish_returns_the_id(bus: EventBackend, t: Callable[[str], str]) -> None:
    async with ax.events.subscribe(t("task.completed"), backend=bus) as sub:
        event_id = await ax.events.publish(
            t("task.completed"), {"task_id": "123", "status": "success"}, source="email-agent",
            backend=bus,
        )
        [event] = await take(sub, 1)
    assert event.id == event_id and event_id is not None
    assert event.source == event.source_agent == "email-agent"
    assert event.payload == {"task_id": "123", "status": "success"}
    assert event.time.tzinfo is not None and len(event.uuid) == 32


async def test_resume_from_last_id_receives_what_was_missed(bus: EventBackend, t: Callable[[str], str]) -> None:
    async with ax.events.subscribe(t("order.*"), backend=bus) as sub:
        for i in range(2):
            await ax.events.publish(t("order.created"), {"i": i}, backend=bus)
        seen = await take(sub, 2)
    last_id = sub.last_id
    assert last_id == seen[-1].id

    # while nobody listens: three matching events and one that does not match
    for i in range(2, 5):
        await ax.events.publish(t("order.created"), {"i": i}, backend=bus)
    await ax.events.publish(t("invoice.created"), {"i": -1}, backend=bus)

    async with ax.events.subscribe(t("order.*"), last_id=last_id, backend=bus) as resumed:
        missed = await take(resumed, 3)
        await ax.events.publish(t("order.shipped"), {"i": 5}, backend=bus)
        live = await take(resumed, 1)
    assert [e.payload["i"] for e in missed] == [2, 3, 4]
    assert live[0].event_type == t("order.shipped")


async def test_without_last_id_a_new_subscriber_gets_only_new_events(bus: EventBackend, t: Callable[[str], str]) -> None:
    await ax.events.publish(t("order.created"), {"i": 0}, backend=bus)
    async with ax.events.subscribe(t("order.*"), backend=bus) as sub:
        await ax.events.publish(t("order.created"), {"i": 1}, backend=bus)
        [event] = await take(sub, 1)
    assert event.payload == {"i": 1}


async def test_malformed_messages_are_skipped(bus: EventBackend, t: Callable[[str], str]) -> None:
    async with ax.events.subscribe(t("x.*"), backend=bus) as sub:
        await bus.publish("events:" + t("x.raw"), "not json")
        await bus.publish("events:" + t("x.raw"), json.dumps([1, 2]))
        await ax.events.publish(t("x.good"), {"ok": True}, backend=bus)
        [event] = await take(sub, 1)
    assert event.event_type == t("x.good")


async def test_bare_async_for_and_model_payloads(bus: EventBackend, t: Callable[[str], str]) -> None:
    class Payload(BaseModel):
        n: int

    async def produce() -> None:
        await anyio.sleep(0.05)
        await ax.events.publish(t("m.sent"), Payload(n=7), backend=bus)

    got: list[BusEvent] = []
    async with anyio.create_task_group() as tg:
        sub = ax.events.subscribe(t("m.*"), backend=bus)
        await sub.open()
        tg.start_soon(produce)
        with anyio.fail_after(5):
            async for event in sub:
                got.append(event)
                break
        await sub.aclose()
    assert got[0].payload == {"n": 7}


async def test_bad_arguments_say_what_is_expected(bus: EventBackend) -> None:
    with pytest.raises(ValueError, match="event_type must be a non-empty string"):
        await ax.events.publish("", {}, backend=bus)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        await ax.events.publish("x.y", {"f": object()}, backend=bus)


async def test_default_backend_is_the_process_backends(unique_name: str) -> None:
    url = f"memory://{unique_name}"
    set_backends(build_backends({"queue": url, "results": url, "events": url, "activity": url}))
    try:
        async with ax.events.subscribe("a.*") as sub:
            await ax.events.publish("a.b", {"x": 1}, source="me")
            [event] = await take(sub, 1)
        assert event.payload == {"x": 1}
    finally:
        set_backends(None)
