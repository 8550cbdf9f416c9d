"""ax.events for synchronous code: ``publish_sync`` and ``listen`` (a blocking subscription),
on the backends we ship; a sync task handler publishing from a real worker process is in
tests/test_samples.py (examples/sync_schedules.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import agentexec as ax
import anyio
import pytest
from agentexec.backends import EventBackend
from pydantic import BaseModel


class Ping(BaseModel):
    kind: str


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventBackend]:
    backend: EventBackend
    if request.param == "sqlite":
        from agentexec_sqlalchemy.transport.events import SQLEvents

        backend = SQLEvents(f"sqlite:///{tmp_path}/events.db")
        backend.ensure_schema()  # type: ignore[attr-defined]
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


def test_listen_receives_what_publish_sync_sends(bus: EventBackend) -> None:
    kind = f"t{uuid.uuid4().hex[:8]}"
    with ax.events.listen(f"{kind}.*", backend=bus) as events:
        started = time.monotonic()
        assert events.get(timeout=0.2) is None  # nothing yet: None after the timeout
        assert time.monotonic() - started < 2
        first = ax.events.publish_sync(f"{kind}.done", {"n": 1}, source="sync", backend=bus)
        ax.events.publish_sync(f"{kind}.other", {"n": 2}, backend=bus)
        ax.events.publish_sync(f"elsewhere{kind}.done", {"n": 3}, backend=bus)  # not matched
        event = events.get(timeout=10)
        assert event is not None
        assert (event.event_type, event.payload, event.source) == (f"{kind}.done", {"n": 1}, "sync")
        assert event.id == first and events.last_id == first
        second = next(iter(events))
        assert second.payload == {"n": 2}
        assert events.get(timeout=0.2) is None


def test_listen_resumes_after_last_id(bus: EventBackend) -> None:
    kind = f"t{uuid.uuid4().hex[:8]}"
    with ax.events.listen(f"{kind}.*", backend=bus) as events:
        ax.events.publish_sync(f"{kind}.a", 1, backend=bus)
        got = events.get(timeout=10)
        assert got is not None
    ax.events.publish_sync(f"{kind}.b", 2, backend=bus)  # while nobody listens
    with ax.events.listen(f"{kind}.*", last_id=got.id, backend=bus) as events:
        missed = events.get(timeout=10)
        assert missed is not None and missed.payload == 2


def test_the_blocking_calls_refuse_to_run_on_an_event_loop() -> None:
    async def inside() -> None:
        with pytest.raises(RuntimeError, match=r"await ax\.events\.publish\(\.\.\.\) here"):
            ax.events.publish_sync("x.y", 1)
        with pytest.raises(RuntimeError, match=r"async with ax\.events\.subscribe\(\.\.\.\) here"):
            ax.events.listen("x.*").open()

    anyio.run(inside)


def test_publish_sync_checks_the_event_type_first() -> None:
    with pytest.raises(ValueError, match="event_type must be a non-empty string"):
        ax.events.publish_sync("", 1)


def test_a_sync_handler_listens_and_publishes_on_its_workers_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inside a sync handler (a worker thread) both calls go to the worker's own event loop,
    where its backends live (in-process memory backends here: one loop owns them)."""
    from agentexec.config import CONF
    from agentexec.runtime import build_backends, set_backends

    url = f"memory://{uuid.uuid4().hex}"
    backends = build_backends({k: url for k in ("queue", "results", "events", "activity")})  # type: ignore[misc]
    set_backends(backends)
    monkeypatch.setattr(CONF, "num_workers", 1)
    pool = ax.Pool(queue_name=f"q{uuid.uuid4().hex[:8]}", backends=backends)

    @pool.task("echo")
    def echo(agent_id: uuid.UUID, context: Ping) -> object:
        with ax.events.listen(f"{context.kind}.*") as events:
            ax.events.publish_sync(f"{context.kind}.hello", {"from": "handler"})
            event = events.get(timeout=5)
        return None if event is None else event.payload

    pool.start()
    try:
        async def run() -> object:
            task = await ax.enqueue(echo, Ping(kind=f"k{uuid.uuid4().hex[:6]}"), queue_name=pool.queue_name)
            return await ax.get_result(task, timeout=10)

        assert anyio.run(run) == {"from": "handler"}
    finally:
        pool.shutdown(timeout=5)
        set_backends(None)
