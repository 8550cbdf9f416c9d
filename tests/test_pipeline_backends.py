"""Enqueued pipelines on a running pool, on every shipped backend: memory (workers on a thread),
Redis and the embedded SQL transport on SQLite (worker processes).

Every pool here has ONE worker with ONE task slot, so each pattern that fans out to child tasks
also shows that a pipeline waiting on its children never holds the slot they need.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.runtime import build_backends, set_backends
from pydantic import BaseModel

pytestmark = pytest.mark.anyio

WAIT = 30  # seconds; every wait in this module is bounded by it


class Ctx(BaseModel):
    value: int
    items: list[int] = []


class Summary(BaseModel):
    total: int
    count: int


class Barrier(BaseModel):
    pipelines: int
    children: int


@dataclass
class App:
    pool: Any
    pipelines: dict[str, Any]


# state of the worker process (or thread) that runs the pipelines: one worker in every pool
_started = 0


def install(pool: Any) -> App:
    """Register the child tasks and one pipeline per pattern on ``pool``."""

    @pool.task("square")
    async def square(agent_id: UUID, context: Ctx) -> int:
        await anyio.sleep(0.01)
        return context.value * context.value

    @pool.task("describe")
    async def describe(agent_id: UUID, context: Ctx) -> dict[str, Any]:
        return {"value": context.value, "even": context.value % 2 == 0}

    pipelines: dict[str, Any] = {}

    single = pipelines["single"] = ax.Pipeline(pool)

    class SingleValue(single.Base):
        @single.step(0, description="Square the value")
        async def first(self, ctx: Ctx) -> int:
            return int(await ax.get_result(await ax.enqueue("square", ctx), timeout=WAIT))

        @single.step(1)
        async def second(self, squared: int) -> str:
            return f"squared={squared}"

    tup = pipelines["tuple"] = ax.Pipeline(pool)

    class TupleUnpacking(tup.Base):
        @tup.step(0)
        async def split(self, ctx: Ctx) -> tuple[int, Summary, str]:
            return ctx.value, Summary(total=ctx.value * 10, count=1), "label"

        @tup.step(1)
        async def join(self, value: int, summary: Summary, label: str) -> Summary:
            assert isinstance(summary, Summary)
            return Summary(total=summary.total + value, count=len(label))

    dct = pipelines["dict"] = ax.Pipeline(pool)

    class DictPassing(dct.Base):
        @dct.step(0)
        async def fetch(self, ctx: Ctx) -> dict[str, Any]:
            return dict(await ax.get_result(await ax.enqueue("describe", ctx), timeout=WAIT))

        @dct.step(1)
        async def use(self, data: dict[str, Any]) -> list[str]:
            return sorted(f"{k}={v}" for k, v in data.items())

    cond = pipelines["conditional"] = ax.Pipeline(pool)

    class Conditional(cond.Base):
        @cond.step(0)
        async def check(self, ctx: Ctx) -> dict[str, Any]:
            return {"value": ctx.value, "needs_review": ctx.value > 10}

        @cond.step(1, description="Review when needed")
        async def maybe_review(self, data: dict[str, Any]) -> dict[str, Any]:
            if data["needs_review"]:
                reviewed = await ax.get_result(
                    await ax.enqueue("square", Ctx(value=data["value"])), timeout=WAIT
                )
                return {**data, "reviewed": reviewed}
            return data

    fan = pipelines["fan"] = ax.Pipeline(pool)

    class FanOutFanIn(fan.Base):
        @fan.step(0, description="Fan out")
        async def fan_out(self, ctx: Ctx) -> tuple[int, ...]:
            tasks = [await ax.enqueue("square", Ctx(value=i)) for i in ctx.items]
            return await ax.gather(*tasks, timeout=WAIT)

        @fan.step(1, description="Fan in")
        async def fan_in(self, *results: int) -> Summary:
            return Summary(total=sum(results), count=len(results))

    etl = pipelines["strings"] = ax.Pipeline(pool)

    class StringOrdering(etl.Base):
        @etl.step("c_load")
        async def load(self, data: list[str]) -> str:
            return "|".join([*data, "load"])

        @etl.step("a_extract")
        async def extract(self, ctx: Ctx) -> list[str]:
            return ["extract"]

        @etl.step("b_transform")
        async def transform(self, data: list[str]) -> list[str]:
            return [*data, "transform"]

    bad = pipelines["failing"] = ax.Pipeline(pool)

    class Failing(bad.Base):
        @bad.step(0)
        async def fine(self, ctx: Ctx) -> int:
            return ctx.value

        @bad.step(1, description="Validate the value")
        async def validate(self, value: int) -> int:
            raise ValueError(f"value {value} is out of range")

        @bad.step(2)
        async def never(self, value: int) -> int:
            raise AssertionError("a step after a failed step ran")

    wait = pipelines["barrier"] = ax.Pipeline(pool)

    class WaitForAll(wait.Base):
        @wait.step(0, description="Wait until every pipeline runs, then fan out")
        async def together(self, ctx: Ctx) -> Barrier:
            global _started
            _started += 1
            with anyio.fail_after(WAIT):  # all pipelines must be running at the same time
                while _started < ctx.value:
                    await anyio.sleep(0.01)
            tasks = [await ax.enqueue("square", Ctx(value=i)) for i in ctx.items]
            results = await ax.gather(*tasks, timeout=WAIT)
            return Barrier(pipelines=_started, children=len(results))

    return App(pool, pipelines)


def _sqlite(path: str) -> str:
    import sqlalchemy as sa

    url = f"sqlite:///{path}"
    ax.Base.metadata.create_all(sa.create_engine(url))
    return url


@pytest.fixture(scope="module", params=["memory", "redis", "sqlite"])
def app(
    request: pytest.FixtureRequest, redis_server_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    global _started
    name = f"pipe{os.urandom(5).hex()}"
    kinds = ("queue", "results", "events", "activity")
    if request.param == "memory":
        urls = {k: f"memory://{name}" for k in kinds}
    elif request.param == "redis":
        if redis_server_url is None:
            pytest.skip("needs a real Redis: worker processes cannot share fakeredis")
        activity = _sqlite(str(tmp_path_factory.mktemp("redis") / "activity.db"))
        urls = {"queue": redis_server_url, "results": redis_server_url, "events": redis_server_url, "activity": activity}
    else:
        db = _sqlite(str(tmp_path_factory.mktemp("sqlite") / "agentexec.db"))
        urls = dict.fromkeys(kinds, db)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ax.CONF, "queue_name", name)
        mp.setattr(ax.CONF, "num_workers", 1)
        mp.setattr(ax.CONF, "worker_concurrency", 1)
        _started = 0
        backends = build_backends(urls)  # type: ignore[arg-type]
        set_backends(backends)
        built = install(ax.Pool(backends=backends))
        built.pool.start()
        try:
            yield built
        finally:
            built.pool.shutdown(timeout=5)
            set_backends(None)


async def _result(task: ax.Task) -> Any:
    return await ax.get_result(task, timeout=WAIT)


async def test_single_value(app: App) -> None:
    task = await app.pipelines["single"].enqueue(context=Ctx(value=7))
    assert await _result(task) == "squared=49"


async def test_tuple_unpacking_keeps_models(app: App) -> None:
    task = await app.pipelines["tuple"].enqueue(context=Ctx(value=3))
    assert await _result(task) == Summary(total=33, count=5)


async def test_dict_passing(app: App) -> None:
    task = await app.pipelines["dict"].enqueue(context=Ctx(value=4))
    assert await _result(task) == ["even=True", "value=4"]


async def test_conditional_step(app: App) -> None:
    low = await app.pipelines["conditional"].enqueue(context=Ctx(value=2))
    high = await app.pipelines["conditional"].enqueue(context=Ctx(value=12))
    assert await _result(low) == {"value": 2, "needs_review": False}
    assert await _result(high) == {"value": 12, "needs_review": True, "reviewed": 144}


async def test_fan_out_fan_in_with_star_results(app: App) -> None:
    task = await app.pipelines["fan"].enqueue(context=Ctx(value=0, items=[1, 2, 3, 4]))
    assert await _result(task) == Summary(total=30, count=4)
    detail = await ax.activity.adetail(task.agent_id)
    assert detail is not None
    assert detail.agent_type == "fan_out_fan_in"
    steps = [(log.message, log.percentage) for log in detail.logs if log.message.startswith("Step")]
    assert steps == [("Step 1/2: Fan out", 0), ("Step 2/2: Fan in", 50)]
    assert detail.status is ax.Status.COMPLETE and detail.latest_percentage == 100


async def test_string_ordering(app: App) -> None:
    task = await app.pipelines["strings"].enqueue(context=Ctx(value=0))
    assert await _result(task) == "extract|transform|load"


async def test_failing_step_stops_the_pipeline(app: App) -> None:
    task = await app.pipelines["failing"].enqueue(context=Ctx(value=99))
    with pytest.raises(ax.TaskFailedError) as info:
        await _result(task)
    assert "step 'validate' (2/3)" in info.value.error
    assert "ValueError: value 99 is out of range" in info.value.error
    detail = await ax.activity.adetail(task.agent_id)
    assert detail is not None
    assert detail.status is ax.Status.ERROR
    assert "validate" in detail.logs[-1].message
    assert not any("3/3" in log.message for log in detail.logs)


async def test_three_pipelines_at_once_each_fanning_out_to_five_children(app: App) -> None:
    """1 worker, 1 task slot: the 3 pipelines wait for each other (so all 3 are running at
    once), then each waits on 5 children. Were a pipeline to hold the task slot, nothing could
    finish."""
    pipeline = app.pipelines["barrier"]
    with anyio.fail_after(WAIT):
        tasks = [await pipeline.enqueue(context=Ctx(value=3, items=[1, 2, 3, 4, 5])) for _ in range(3)]
        results = await ax.gather(*tasks, timeout=WAIT)
    assert [r.children for r in results] == [5, 5, 5]
    assert all(r.pipelines >= 3 for r in results)


async def test_pipeline_runs_on_its_own_lane(app: App) -> None:
    pipeline = app.pipelines["single"]
    task = await pipeline.enqueue(context=Ctx(value=1))
    assert task.queue_name == f"{app.pool.queue_name}:pipelines"
    assert {lane.name for lane in app.pool.lanes()} == {"default", "pipelines"}
    await _result(task)
