"""Issue #16: schedules as the original agentexec's README writes them (0.3, "Scheduled Tasks").

- ``@pool.schedule("task", "0 9 * * *")`` and ``pool.add_schedule("task", "*/5 * * * *", ctx)``:
  the rule (a cron expression) and the context positionally; ``every=`` holding a cron
  expression, the original's keyword for it;
- ``repeat``: how many more firings after the first (``0`` one-shot, ``-1`` forever, ``N``:
  N + 1 firings);
- the same task scheduled twice with the same rule and context replaces the first; with another
  rule or context it is a second schedule (the README schedules ``refresh_cache`` twice).

Fired by a real ``ax.Pool``'s scheduler, ticked by hand on the memory backends, and on the
claim/budget backends of every stack (the budget is shared through them).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import agentexec as ax
import pytest
from agentexec.plugins import get_registry
from agentexec.runtime import Backends, build_backends
from agentexec.schedule import ScheduleError
from pydantic import BaseModel

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, 8, 0, 30, tzinfo=UTC)


class RefreshContext(BaseModel):
    scope: str = "all"


class SyncContext(BaseModel):
    full: bool = False


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis"])
def backends(request: pytest.FixtureRequest, unique_name: str, tmp_path: Any) -> Iterator[Backends]:
    """Activity in memory (so it can be read back); queue, claims and budgets on the stack."""
    shared = f"memory://{unique_name}"
    base = build_backends(dict.fromkeys(("queue", "results", "events", "activity"), shared))  # type: ignore[arg-type]
    if request.param == "memory":
        yield base
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/sched.db"
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_server_url")
    else:
        url = request.getfixturevalue("redis_server_url")
        if url is None:
            pytest.skip("needs a real Redis")
    registry = get_registry()
    yield base.with_(queue=registry.find("queue", url).load()(url),
                     results=registry.find("results", url).load()(url))


def make_pool(unique_name: str, backends: Backends) -> Any:
    pool = ax.Pool(queue_name=unique_name, backends=backends)

    @pool.task("refresh_cache")
    async def refresh(agent_id: UUID, context: RefreshContext) -> None: ...

    return pool


async def fired(pool: Any, backends: Backends, minutes: int) -> dict[str, int]:
    """Tick the pool's scheduler once a minute for ``minutes``; firings per schedule."""
    for minute in range(minutes + 1):
        await pool.scheduler.tick(backends, T0 + timedelta(minutes=minute))
    counts: dict[str, int] = {}
    for item in backends.activity.list(page_size=1000).items:
        assert item.metadata is not None
        counts[item.metadata["schedule"]] = counts.get(item.metadata["schedule"], 0) + 1
    return counts


def test_the_readmes_positional_forms() -> None:
    pool = ax.Pool(backends=build_backends(dict.fromkeys(("queue", "results", "events", "activity"), "memory://s")))  # type: ignore[arg-type]

    @pool.schedule("refresh", "*/5 * * * *")  # the decorator, rule positional
    async def refresh(agent_id: UUID, context: RefreshContext) -> None: ...

    @pool.schedule("sync_users", "0 * * * *", context=SyncContext(full=True), repeat=3)
    async def sync(agent_id: UUID, context: SyncContext) -> None: ...

    @pool.schedule("report", "0 9 * * *")
    async def report(agent_id: UUID, context: RefreshContext) -> None: ...

    pool.add_schedule("refresh", "0 * * * *", RefreshContext(scope="users"), repeat=3)
    pool.add_schedule("refresh", every="*/10 * * * *", context=RefreshContext(scope="x"))  # 0.3's keyword
    pool.add_schedule("refresh", "5 minutes")  # one of ours, positionally
    rules = sorted((s.task_name, s.timing.describe(), s.repeat) for s in pool.scheduler)
    assert rules == [
        ("refresh", "cron */10 * * * *", None),
        ("refresh", "cron */5 * * * *", None),
        ("refresh", "cron 0 * * * *", 3),
        ("refresh", "every 5 minutes", None),
        ("report", "cron 0 9 * * *", None),
        ("sync_users", "cron 0 * * * *", 3),
    ]
    assert pool.schedules["sync_users"].context == SyncContext(full=True)
    assert pool.schedules["sync_users"].firings == 4
    with pytest.raises(ScheduleError, match="give the rule once"):
        pool.add_schedule("refresh", "0 * * * *", cron="0 * * * *")


def test_the_same_schedule_twice_replaces_it() -> None:
    pool = ax.Pool(backends=build_backends(dict.fromkeys(("queue", "results", "events", "activity"), "memory://r")))  # type: ignore[arg-type]

    @pool.task("refresh_cache")
    async def refresh(agent_id: UUID, context: RefreshContext) -> None: ...

    first = pool.add_schedule("refresh_cache", "*/5 * * * *", RefreshContext(scope="all"))
    again = pool.add_schedule("refresh_cache", "*/5 * * * *", RefreshContext(scope="all"), repeat=2)
    assert len(pool.schedules) == 1 and pool.schedules[first.name] is again and again.repeat == 2
    # other context or rule: a second schedule of the task, named after what tells it apart
    users = pool.add_schedule("refresh_cache", "0 * * * *", RefreshContext(scope="users"), repeat=3)
    assert len(pool.schedules) == 2 and users.name == f"refresh_cache@{users.identity}"
    assert pool.add_schedule("refresh_cache", "0 * * * *", RefreshContext(scope="users")).name == users.name
    assert len(pool.schedules) == 2
    # a name given explicitly is still unique
    with pytest.raises(ScheduleError, match="already exists"):
        pool.add_schedule("refresh_cache", "0 1 * * *", name="refresh_cache")


async def test_repeat_counts_the_firings_after_the_first(backends: Backends, unique_name: str) -> None:
    pool = make_pool(unique_name, backends)
    pool.add_schedule("refresh_cache", "* * * * *", RefreshContext(scope="once"), name="once", repeat=0)
    pool.add_schedule("refresh_cache", "* * * * *", RefreshContext(scope="three"), name="three", repeat=3)
    pool.add_schedule("refresh_cache", "* * * * *", RefreshContext(scope="ever"), name="ever", repeat=-1)
    pool.add_schedule("refresh_cache", "* * * * *", name="default")  # forever
    counts = await fired(pool, backends, minutes=6)  # six ticks: 08:01 .. 08:06
    assert counts == {"once": 1, "three": 4, "ever": 6, "default": 6}
    assert pool.scheduler.exhausted("once") and pool.scheduler.exhausted("three")
    assert not pool.scheduler.exhausted("ever")


def test_repeat_values_the_original_refuses_are_refused_here_too() -> None:
    pool = ax.Pool(backends=build_backends(dict.fromkeys(("queue", "results", "events", "activity"), "memory://v")))  # type: ignore[arg-type]

    @pool.task("refresh_cache")
    async def refresh(agent_id: UUID, context: RefreshContext) -> None: ...

    for bad in (-2, 1.5, "twice", True):
        with pytest.raises(ScheduleError, match="repeat must be how many more times"):
            pool.add_schedule("refresh_cache", "* * * * *", repeat=bad)
    assert pool.add_schedule("refresh_cache", "* * * * *", repeat="once").firings == 1
