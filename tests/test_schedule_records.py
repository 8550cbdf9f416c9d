"""Runtime schedules (``ax.schedules``, agentexec.schedule.records) on the memory backends:
the Python API as docs/http-api.md shows it, and a scheduler that follows the records (created:
it fires; disabled: it stops; deleted: it is gone; code schedules written at start)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import agentexec as ax
import pytest
from agentexec import runtime
from agentexec.schedule import ScheduleError, Scheduler
from pydantic import BaseModel

pytestmark = pytest.mark.anyio


class ReportContext(BaseModel):
    recipients: list[str] = []


@pytest.fixture
def backends() -> Iterator[Any]:
    url = f"memory://records-{uuid.uuid4().hex[:8]}"
    previous = runtime.get_backends() if runtime.has_backends() else None
    built = runtime.build_backends({"queue": url, "results": url, "events": url, "activity": url})
    runtime.set_backends(built)
    yield built
    runtime.set_backends(previous)


@pytest.fixture
def pool(backends: Any) -> ax.Pool:
    pool = ax.Pool(backends=backends)

    @pool.task("report")
    async def report(agent_id: UUID, context: ReportContext) -> None: ...

    return pool


async def test_the_python_api_as_documented(pool: ax.Pool, capsys: pytest.CaptureFixture[str]) -> None:
    spec = await ax.schedules.create("report", cron="0 9 * * 1-5", timezone="Europe/Paris",
                                     context={"recipients": ["ops@example.com"]}, name="weekday-report")
    assert (spec.cron, spec.timezone, spec.context) == ("0 9 * * 1-5", "Europe/Paris", {"recipients": ["ops@example.com"]})
    await ax.schedules.disable("weekday-report")
    assert (await ax.schedules.get("weekday-report")).enabled is False  # type: ignore[union-attr]
    await ax.schedules.update("weekday-report", every="1 hour")
    await ax.schedules.enable("weekday-report")
    print(await ax.schedules.list())
    [listed] = await ax.schedules.list()
    assert (listed.every, listed.cron, listed.enabled) == (3600.0, None, True)
    await ax.schedules.delete("weekday-report")
    assert await ax.schedules.list() == []
    assert "weekday-report" in capsys.readouterr().out


async def test_errors_name_the_field(pool: ax.Pool) -> None:
    with pytest.raises(ScheduleError) as bad:
        await ax.schedules.create("report", cron="every morning")
    assert bad.value.field == "cron"
    with pytest.raises(ScheduleError) as unknown:
        await ax.schedules.create("nope", every=60)
    assert unknown.value.field == "task_name" and "report" in str(unknown.value)
    await ax.schedules.create("report", every=60)
    with pytest.raises(ScheduleError, match="already exists"):
        await ax.schedules.create("report", every=120)
    with pytest.raises(LookupError):
        await ax.schedules.disable("missing")


async def test_a_scheduler_follows_the_records(pool: ax.Pool, backends: Any) -> None:
    scheduler = Scheduler(queue_name=pool.queue_name)
    scheduler.tasks = pool.tasks
    scheduler.add(pool.scheduler.schedules.get("x") or _code_schedule(pool))
    await scheduler.sync(backends)  # the code's schedule is written at start
    assert [s.name for s in await ax.schedules.list(pool.queue_name)] == ["from-code"]

    await ax.schedules.create("report", every=1, name="runtime", queue_name=pool.queue_name)
    await scheduler.sync(backends)
    assert set(scheduler.schedules) == {"from-code", "runtime"}
    start = datetime(2030, 1, 1, tzinfo=UTC)
    fired = await _fire(scheduler, backends, start, 3)
    assert fired == 2  # the first look plans, then a tick a second

    await ax.schedules.disable("runtime", pool.queue_name)
    await scheduler.sync(backends)
    assert await _fire(scheduler, backends, start + timedelta(seconds=10), 3) == 0

    await ax.schedules.delete("runtime", pool.queue_name)
    await ax.schedules.delete("from-code", pool.queue_name)  # the records win while running
    await scheduler.sync(backends)
    assert scheduler.schedules == {}


def _code_schedule(pool: ax.Pool) -> Any:
    from agentexec.schedule import build_schedule

    return build_schedule(pool.tasks["report"], every="1 hour", name="from-code")


async def _fire(scheduler: Scheduler, backends: Any, start: datetime, seconds: int) -> int:
    before = (await backends.activity.alist(1, 1)).total
    for second in range(seconds):
        await scheduler.tick(backends, start + timedelta(seconds=second))
    return int((await backends.activity.alist(1, 1)).total - before)


async def test_the_memory_store_lists_its_changes(backends: Any) -> None:
    store = backends.activity
    top, none = await store.achanges(None)
    assert none == []
    agent_id = await ax.activity.acreate("report", "queued", metadata={"tenant": "a"})
    await ax.activity.aupdate(agent_id, "halfway", percentage=50)
    new_top, changes = await store.achanges(top)
    assert [(c.message, c.percentage, c.metadata) for c in changes] == [
        ("queued", 0, {"tenant": "a"}), ("halfway", 50, {"tenant": "a"})]
    assert new_top == changes[-1].id
    _, again = await store.achanges(changes[-1].id, also=[changes[0].id])
    assert [c.id for c in again] == [changes[0].id]
