"""Runtime schedules are read on change, not once a tick (agentexec.schedule.changes), on every
stack: a running scheduler with no runtime schedules reads the store once (at start) and then
not while nothing changes; a create, a disable and a delete each reach it within one tick, with
one read each."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec import runtime
from agentexec.runtime import Backends, build_backends
from agentexec.schedule import Scheduler
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio]


class Ping(BaseModel):
    n: int = 0


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_server_url")
        if redis_url is None:
            pytest.skip("no real Redis server")
        db = request.getfixturevalue("postgres_server_url")
        urls = {"queue": redis_url, "results": redis_url, "events": redis_url, "activity": db}
    else:
        db = f"sqlite:///{tmp_path / 'agentexec.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_server_url")
        urls = {"queue": db, "results": db, "events": db, "activity": db}
    built = build_backends(urls)  # type: ignore[arg-type]
    engine = getattr(built.activity, "engine", None)
    if engine is not None:
        ax.Base.metadata.create_all(engine)
    previous = runtime.get_backends() if runtime.has_backends() else None
    runtime.set_backends(built)
    yield built
    runtime.set_backends(previous)


async def wait_for(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)
    return time.monotonic() - started


async def test_an_idle_scheduler_reads_the_store_only_on_change(backends: Backends) -> None:
    queue = f"changes_{uuid.uuid4().hex[:8]}"
    pool = ax.Pool(queue_name=queue, backends=backends)

    @pool.task("ping")
    async def ping(agent_id: UUID, context: Ping) -> None: ...

    reads = 0
    store = backends.results
    real = store.schedule_records  # type: ignore[attr-defined]

    async def counted(queue_name: str) -> dict[str, str]:
        nonlocal reads
        if queue_name == queue:
            reads += 1
        return await real(queue_name)  # type: ignore[no-any-return]

    store.schedule_records = counted  # type: ignore[attr-defined]
    scheduler = Scheduler(queue_name=queue)
    scheduler.tasks = pool.tasks
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, backends, stop)
            await wait_for(lambda: reads >= 1, 10, "the first read")
            await anyio.sleep(2.5)  # more than two ticks, nothing changes
            assert reads == 1, f"an idle scheduler read the schedule store {reads} times"
            assert scheduler.watch is not None and scheduler.watch.subscribed

            await ax.schedules.create("ping", every=3600, name="hourly", queue_name=queue)
            took = await wait_for(lambda: "hourly" in scheduler.schedules, 5, "the created schedule")
            assert took < 1.0, f"a created schedule took {took:.2f} s to reach the scheduler"
            await ax.schedules.disable("hourly", queue_name=queue)
            took = await wait_for(lambda: not scheduler.schedules["hourly"].enabled, 5, "the disable")
            assert took < 1.0, f"a disable took {took:.2f} s to reach the scheduler"
            await ax.schedules.delete("hourly", queue_name=queue)
            await wait_for(lambda: "hourly" not in scheduler.schedules, 5, "the delete")
            settled = reads
            assert settled <= 1 + 3 * 2, f"{settled} reads for three changes"
            await anyio.sleep(1.5)
            assert reads == settled, "the scheduler kept reading after the changes"
            stop.set()
    finally:
        store.schedule_records = real  # type: ignore[attr-defined]


async def test_a_store_that_cannot_be_read_is_retried_with_pauses(backends: Backends) -> None:
    """A read that fails (the database down, the SQLite file deleted under a running pool) is
    tried again after a pause that grows, not at once: it once kept a pool's main process busy
    at ~80 % of a core, logging a warning per try."""
    queue = f"changes_{uuid.uuid4().hex[:8]}"
    tries = 0
    store = backends.results
    real = store.schedule_records  # type: ignore[attr-defined]

    async def failing(queue_name: str) -> dict[str, str]:
        nonlocal tries
        if queue_name != queue:
            return await real(queue_name)  # type: ignore[no-any-return]
        tries += 1
        raise RuntimeError("no such table")

    store.schedule_records = failing  # type: ignore[attr-defined]
    scheduler = Scheduler(queue_name=queue)
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, backends, stop)
            await wait_for(lambda: tries >= 1, 10, "the first read")
            await anyio.sleep(2.0)
            # pauses of 0.1, 0.2, 0.4, 0.8 s ... : a handful of tries in 2 s, not thousands
            assert 2 <= tries <= 8, f"{tries} reads of a failing store in 2 s"
            stop.set()
    finally:
        store.schedule_records = real  # type: ignore[attr-defined]
