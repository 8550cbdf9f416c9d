"""Lifecycle events (agentexec.task_events) on the memory backends: every transition of a task
is announced once, in order, with its name, agent_id and metadata and no result; a retry is
queued again; a queued task cancelled by ``ax.cancel`` is announced by the canceller; a
schedule's firing announces ``schedule.fired``; ``CONF.lifecycle_events = False`` announces
nothing. (tests/e2e/test_pool_lifecycle_events.py: the same across processes, on every stack.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import anyio
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.config import CONF
from agentexec.events import BusEvent
from agentexec.runtime import Backends
from agentexec.schedule import Scheduler

pytestmark = pytest.mark.anyio
WAIT = 10.0


class Ctx(BaseModel):
    fail: bool = False
    flaky: bool = False
    seconds: float = 0.0


async def collect(events: Any, count: int) -> list[BusEvent]:
    got: list[BusEvent] = []
    with anyio.fail_after(WAIT):
        async for event in events:
            got.append(event)
            if len(got) == count:
                return got
    return got


async def test_each_transition_is_announced_once_in_order(make_pool: Any) -> None:
    pool = make_pool()
    tries: list[UUID] = []

    @pool.task("work", retries=1, backoff=0.01)
    async def work(agent_id: UUID, context: Ctx) -> str:
        tries.append(agent_id)
        if context.fail or (context.flaky and tries.count(agent_id) == 1):
            raise ConnectionError("flaky")
        return "a result nobody must see in an event"

    pool.start()
    async with ax.events.subscribe("task.*") as events:
        ok = await ax.enqueue("work", Ctx(), queue_name=pool.queue_name, metadata={"org": "acme"})
        got = await collect(events, 3)
        flaky = await ax.enqueue("work", Ctx(flaky=True), queue_name=pool.queue_name)
        got += await collect(events, 5)  # queued, started, queued (its retry), started, completed
        bad = await ax.enqueue("work", Ctx(fail=True), queue_name=pool.queue_name)
        got += await collect(events, 5)

    def of(task: Any) -> list[str]:
        return [e.event_type for e in got if e.payload["agent_id"] == str(task.agent_id)]

    assert of(ok) == ["task.queued", "task.started", "task.completed"]
    assert of(flaky) == ["task.queued", "task.started", "task.queued", "task.started", "task.completed"]
    assert of(bad) == ["task.queued", "task.started", "task.queued", "task.started", "task.failed"]
    completed = next(e for e in got if e.event_type == "task.completed")
    assert completed.payload == {
        "task_id": str(ok.agent_id), "agent_id": str(ok.agent_id), "task_name": "work",
        "status": "COMPLETE", "metadata": {"org": "acme"},
    }
    assert completed.source == "agentexec"
    failed = next(e for e in got if e.event_type == "task.failed")
    assert failed.payload["status"] == "ERROR" and "flaky" in failed.payload["message"]
    assert all("result nobody" not in e.model_dump_json() for e in got)


async def test_a_queued_task_cancelled_is_announced_by_the_canceller(backends: Backends) -> None:
    pool = ax.Pool(queue_name="nobody-runs-this", backends=backends)

    @pool.task("work")
    async def work(agent_id: UUID, context: Ctx) -> None: ...

    async with ax.events.subscribe("task.*") as events:
        task = await ax.enqueue("work", Ctx(), queue_name=pool.queue_name)
        await ax.cancel(task.agent_id, reason="not needed", queue_name=pool.queue_name)
        queued, cancelled = await collect(events, 2)
    assert (queued.event_type, cancelled.event_type) == ("task.queued", "task.cancelled")
    assert cancelled.payload["agent_id"] == str(task.agent_id)
    assert "not needed" in cancelled.payload["message"]


async def test_a_schedule_firing_is_announced(backends: Backends) -> None:
    pool = ax.Pool(queue_name="fired", backends=backends)

    @pool.task("work")
    async def work(agent_id: UUID, context: Ctx) -> None: ...

    pool.add_schedule("work", every=60, name="minutely")
    scheduler = Scheduler(pool.scheduler.schedules.values(), queue_name="fired")
    schedule = scheduler.schedules["minutely"]
    async with ax.events.subscribe("schedule.*", "task.*") as events:
        await scheduler.fire(backends, schedule, datetime(2026, 1, 1, tzinfo=UTC))
        fired, queued = await collect(events, 2)
    assert fired.event_type == "schedule.fired"
    assert fired.payload["schedule"] == "minutely" and fired.payload["task_name"] == "work"
    assert fired.payload["scheduled_for"] == "2026-01-01T00:00:00+00:00"
    assert queued.event_type == "task.queued" and queued.payload["agent_id"] == fired.payload["agent_id"]
    assert queued.payload["metadata"]["schedule"] == "minutely"


async def test_turned_off_nothing_is_announced(make_pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "lifecycle_events", False)
    pool = make_pool()

    @pool.task("work")
    async def work(agent_id: UUID, context: Ctx) -> None: ...

    pool.start()
    async with ax.events.subscribe("task.*", "marker") as events:
        task = await ax.enqueue("work", Ctx(), queue_name=pool.queue_name)
        await ax.get_result(task, timeout=WAIT)
        await ax.cancel(task.agent_id, queue_name=pool.queue_name)
        await ax.events.publish("marker")
        [first] = await collect(events, 1)
    assert first.event_type == "marker", f"{first.event_type} was published with lifecycle_events off"


async def test_events_of_one_commit_travel_as_one_message(backends: Backends) -> None:
    """A batch of one type is one message (control listeners read it once); a subscriber gets
    each event, and ``last_id`` moves past the message only once all of it was handed out."""
    from agentexec import task_events
    from agentexec.activity.status import Status
    from agentexec.backends import Event
    from agentexec.cli.tail import render

    ids = [uuid.uuid4() for _ in range(3)]
    batch = [("task.completed", task_events.encode_task(i, "work", Status.COMPLETE, None)) for i in ids]
    raw: list[Event] = []
    async with backends.events.subscribe(["events:*"]) as stream, ax.events.subscribe("task.*") as events:
        await task_events.publish_all(backends.events, [*batch, ("task.started", batch[0][1])])
        with anyio.fail_after(WAIT):
            async for message in stream:
                raw.append(message)
                if len(raw) == 2:
                    break
        got, last_ids = [], []
        for _ in range(4):
            got.append(await events.__anext__())
            last_ids.append(events.last_id)
    assert [m.channel for m in raw] == ["events:task.completed", "events:task.started"]
    assert [e.payload["agent_id"] for e in got[:3]] == [str(i) for i in ids]
    assert {e.id for e in got[:3]} == {raw[0].id}
    assert last_ids[:3] == [None, None, raw[0].id]
    record = render(raw[0])
    assert record is not None and len(record["events"]) == 3


async def test_a_window_of_events_is_one_write_on_a_mixed_publish_backend() -> None:
    """A backend with ``publish_mixed`` gets everything a worker's writer committed over a
    ``LINGER`` window in one call (the SQL transport: one statement), every type of it, and
    each task's events still in the order they happened, though the window holds two of each."""
    from agentexec import task_events
    from agentexec.activity.status import Status
    from agentexec.backends import LogEntry, MixedPublish
    from agentexec.events import decode_all
    from agentexec.memory.events import MemoryEvents

    class Mixed(MemoryEvents):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[list[tuple[str, str]]] = []

        async def publish_mixed(self, messages: Any) -> None:
            self.writes.append(list(messages))
            for channel, data in messages:
                await self.publish(channel, data)

    bus = Mixed()
    assert isinstance(bus, MixedPublish)
    ids = [uuid.uuid4() for _ in range(3)]
    names = {i: "work" for i in ids}
    writer = task_events.WriterEvents(bus)
    async with bus.subscribe(["events:*"]) as stream:
        writer.written([LogEntry(i, "started", Status.RUNNING) for i in ids], names, {})
        await anyio.sleep(task_events.LINGER / 5)  # the next commits, within the window
        writer.written([LogEntry(ids[0], "done", Status.COMPLETE)], names, {})
        writer.written([LogEntry(i, "done", Status.COMPLETE) for i in ids[1:]], names, {})
        await anyio.sleep(task_events.LINGER * 4)
        await writer.aclose()
        got = []
        with anyio.fail_after(WAIT):
            async for message in stream:
                got += [(e.event_type, e.payload["agent_id"]) for e in decode_all(message)]
                if len(got) == 6:
                    break
    assert len(bus.writes) == 1, f"{len(bus.writes)} writes for one window"
    # one message per type for the whole window, though its commits interleave the types
    assert [channel for channel, _ in bus.writes[0]] == ["events:task.started", "events:task.completed"]
    for i in ids:
        assert [t for t, a in got if a == str(i)] == ["task.started", "task.completed"]


def _row(event_type: str, agent: uuid.UUID, n: int = 0, metadata: Any = None) -> tuple[str, str, str]:
    """A batch item of :func:`agentexec.task_events._windows`: (event type, row, task's part)."""
    from agentexec import task_events

    part = task_events._row_part(agent, "work", metadata)
    return event_type, f'[{part},null,"2026-12-07T10:00:00+00:00",{n}]', part


def _decoded(channel: str, data: str) -> list[Any]:
    from agentexec.backends import Event
    from agentexec.events import decode_all

    return decode_all(Event(channel, data, "1-0"))


def test_windows_keep_each_tasks_events_in_order() -> None:
    """Random interleavings of tasks that start, fail, are queued again and complete: the
    messages of the windows, in order, give every task's events in the order they happened,
    and a window is cut only where a task comes back to an earlier type."""
    import random

    from agentexec import task_events

    rng = random.Random(7)
    lives = [["task.started", "task.completed"], ["task.started", "task.failed"],
             ["task.queued", "task.started", "task.completed"],
             ["task.started", "task.queued", "task.started", "task.completed"]]
    for _ in range(200):
        series = {uuid.uuid4(): list(rng.choice(lives)) for _ in range(rng.randint(1, 8))}
        batch = []
        pending = {a: list(s) for a, s in series.items()}
        while pending:
            agent = rng.choice(list(pending))
            batch.append(_row(pending[agent].pop(0), agent))
            if not pending[agent]:
                del pending[agent]
        windows = task_events._windows(batch)
        assert sum(count for count, _ in windows) == len(batch)
        sent = [(e.event_type, e.payload["agent_id"]) for _, messages in windows
                for channel, data in messages for e in _decoded(channel, data)]
        for agent, life in series.items():
            assert [t for t, a in sent if a == str(agent)] == life
        if all(len(set(life)) == len(life) for life in series.values()) and len(
            {tuple(life) for life in series.values()}
        ) == 1:
            assert len(windows) == 1  # one kind of life, no type twice: nothing to cut
            assert len(windows[0][1]) == len(next(iter(series.values())))  # a message per type


def test_a_windows_messages_hold_at_most_batch_events_and_fit_max_event_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window's messages of one type hold at most ``BATCH_EVENTS`` events and about
    ``CONF.max_event_bytes`` each (an event alone goes as it is), all of them, in order."""
    import random

    from agentexec import task_events

    monkeypatch.setattr(CONF, "max_event_bytes", 4096)
    rng = random.Random(3)
    for _ in range(100):
        agents = [uuid.uuid4() for _ in range(rng.randint(1, 700))]
        metadata = [{"x": "x" * rng.choice([1, 5, 20, 300, 5000])} for _ in agents]
        rows = [_row("task.started", a, i, m) for i, (a, m) in enumerate(zip(agents, metadata, strict=True))]
        [(count, messages)] = task_events._windows(rows)
        assert count == len(rows)
        got = []
        for channel, data in messages:
            events = _decoded(channel, data)
            assert channel == "events:task.started" and 0 < len(events) <= task_events.BATCH_EVENTS
            assert len(data) <= 4096 or len(events) == 1
            got += events
        assert [e.payload["agent_id"] for e in got] == [str(a) for a in agents]
        assert [e.payload["metadata"] for e in got] == metadata


async def test_a_workers_events_are_the_events_encode_makes() -> None:
    """A worker keeps a task's ids, name and metadata once for all its events (from its first
    to its final event, then dropped) and sends its events as rows of a compact message; a
    subscriber decodes each into the event ``encode`` makes of ``task_payload``, with a time
    and a unique uuid of its own."""
    from agentexec import task_events
    from agentexec.activity.status import Status
    from agentexec.backends import LogEntry

    ids = [uuid.uuid4() for _ in range(3)]
    names = {i: "work" for i in ids}
    metadata = {ids[0]: {"tenant": "acme", "n": 1}, ids[2]: {"when": datetime(2026, 1, 2, tzinfo=UTC)}}
    writer = task_events.WriterEvents(object())  # type: ignore[arg-type]  # never published here
    writer._task = asyncio.get_running_loop().create_future()  # as if publishing: starts none
    lines = [
        LogEntry(ids[0], "started", Status.RUNNING), LogEntry(ids[1], "started", Status.RUNNING),
        LogEntry(ids[2], "started", Status.RUNNING), LogEntry(ids[1], "back", Status.QUEUED),
    ]
    writer.written(lines, names, metadata)
    assert sorted(writer._parts) == sorted(i.int for i in ids)  # kept: more events will follow
    ends = [LogEntry(ids[0], "done", Status.COMPLETE), LogEntry(ids[1], "boom", Status.ERROR),
            LogEntry(ids[2], "stop", Status.CANCELED)]
    writer.written(ends, names, metadata)
    assert writer._parts == {}, "a task's part is dropped at its final event"
    got = [e for _, messages in task_events._windows(writer._pending)
           for channel, data in messages for e in _decoded(channel, data)]
    for agent in ids:
        theirs = [e for e in got if e.payload["agent_id"] == str(agent)]
        wanted = [line for line in lines + ends if line.agent_id == agent]
        assert len(theirs) == len(wanted)
        for event, line in zip(theirs, wanted, strict=True):
            status = line.status or Status.RUNNING
            want = BusEvent.model_validate_json(task_events.encode(
                task_events.EVENT_OF_STATUS[status],
                task_events.task_payload(agent, "work", status, metadata.get(agent), line.message),
            ))
            assert (event.event_type, event.payload, event.source) == (want.event_type, want.payload, want.source)
    assert len({e.uuid for e in got}) == len(got) == 7
    assert all(len(e.uuid) == 32 and int(e.uuid, 16) >= 0 for e in got)
    writer._task.cancel()


async def test_a_worker_keeps_at_most_max_task_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks released for a retry may never come back to this worker: what it keeps for them is
    bounded (``MAX_TASK_PARTS``, then dropped all at once)."""
    from agentexec import task_events
    from agentexec.activity.status import Status
    from agentexec.backends import LogEntry

    monkeypatch.setattr(task_events, "MAX_TASK_PARTS", 10)
    ids = [uuid.uuid4() for _ in range(25)]
    writer = task_events.WriterEvents(object())  # type: ignore[arg-type]
    writer._task = asyncio.get_running_loop().create_future()
    writer.written([LogEntry(i, "started", Status.RUNNING) for i in ids], {i: "w" for i in ids}, {})
    assert 0 < len(writer._parts) <= 10
    assert len(writer._pending) == 25
    writer._task.cancel()
