"""``pipeline.run``: every value-passing pattern, progress in the activity, failures naming the step."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.pipeline import Pipeline
from agentexec.runtime import build_backends, set_backends

pytestmark = pytest.mark.anyio


class Ctx(BaseModel):
    value: int
    items: list[int] = []


class Summary(BaseModel):
    total: int


@pytest.fixture
def memory(unique_name: str) -> Iterator[None]:
    url = f"memory://{unique_name}"
    set_backends(build_backends({k: url for k in ("queue", "results", "events", "activity")}))  # type: ignore[misc]
    yield
    set_backends(None)


async def test_single_value_flows_through_steps() -> None:
    pipeline = Pipeline()
    order: list[str] = []

    class Flow(pipeline.Base):
        @pipeline.step(0)
        async def first(self, ctx: Ctx) -> int:
            order.append("first")
            return ctx.value * 2

        @pipeline.step(1)
        async def second(self, x: int) -> int:
            order.append("second")
            return x + 10

        @pipeline.step(2)
        async def third(self, y: int) -> str:
            order.append("third")
            return f"result: {y}"

    assert await pipeline.run(None, Ctx(value=5)) == "result: 20"
    assert order == ["first", "second", "third"]


async def test_tuple_is_unpacked_into_positional_arguments() -> None:
    pipeline = Pipeline()

    class Split(pipeline.Base):
        @pipeline.step(0)
        async def split(self, ctx: Ctx) -> tuple[int, str, Summary]:
            return ctx.value, f"s{ctx.value}", Summary(total=ctx.value)

        @pipeline.step(1)
        async def combine(self, num: int, text: str, summary: Summary) -> str:
            assert isinstance(summary, Summary)
            return f"{text}_{num * 2}_{summary.total}"

    assert await pipeline.run(None, Ctx(value=5)) == "s5_10_5"


async def test_dict_is_passed_as_one_argument() -> None:
    pipeline = Pipeline()

    class Dicts(pipeline.Base):
        @pipeline.step(0)
        async def produce(self, ctx: Ctx) -> dict[str, int]:
            return {"a": ctx.value, "b": 2}

        @pipeline.step(1)
        async def consume(self, data: dict[str, int]) -> list[str]:
            return sorted(data)

    assert await pipeline.run(None, Ctx(value=1)) == ["a", "b"]


async def test_list_and_none_are_one_argument_each() -> None:
    pipeline = Pipeline()

    class Values(pipeline.Base):
        @pipeline.step(0)
        async def a(self, ctx: Ctx) -> list[int]:
            return [1, 2, 3]

        @pipeline.step(1)
        async def b(self, values: list[int]) -> None:
            assert values == [1, 2, 3]

        @pipeline.step(2)
        async def c(self, nothing: None) -> str:
            return f"got {nothing}"

    assert await pipeline.run(None, Ctx(value=1)) == "got None"


@pytest.mark.parametrize(("value", "expected"), [(1, {"reviewed": True, "value": 1}), (7, {"value": 7})])
async def test_conditional_step(value: int, expected: dict[str, Any]) -> None:
    pipeline = Pipeline()

    class Conditional(pipeline.Base):
        @pipeline.step(0)
        async def check(self, ctx: Ctx) -> dict[str, Any]:
            return {"value": ctx.value, "needs_review": ctx.value < 5}

        @pipeline.step(1)
        async def maybe_review(self, data: dict[str, Any]) -> dict[str, Any]:
            if data.pop("needs_review"):
                return {**data, "reviewed": True}
            return data

    assert await pipeline.run(None, Ctx(value=value)) == expected


async def test_fan_in_with_star_results() -> None:
    pipeline = Pipeline()

    class FanIn(pipeline.Base):
        @pipeline.step(0)
        async def fan_out(self, ctx: Ctx) -> tuple[int, ...]:
            return tuple(i * i for i in ctx.items)

        @pipeline.step(1)
        async def fan_in(self, *results: int) -> Summary:
            return Summary(total=sum(results))

    assert await pipeline.run(None, Ctx(value=0, items=[1, 2, 3])) == Summary(total=14)


async def test_string_ordering_is_sorted_not_definition_order() -> None:
    pipeline = Pipeline()

    class Etl(pipeline.Base):
        @pipeline.step("c_load")
        async def load(self, data: str) -> str:
            return data + "|load"

        @pipeline.step("a_extract")
        async def extract(self, ctx: Ctx) -> str:
            return "extract"

        @pipeline.step("b_transform")
        async def transform(self, data: str) -> str:
            return data + "|transform"

    assert await pipeline.run(None, Ctx(value=0)) == "extract|transform|load"


async def test_sync_steps_run_off_the_event_loop() -> None:
    pipeline = Pipeline()
    loop_thread = threading.get_ident()

    class Mixed(pipeline.Base):
        @pipeline.step(0)
        def compute(self, ctx: Ctx) -> tuple[int, int]:
            return ctx.value, threading.get_ident()

        @pipeline.step(1)
        async def finish(self, value: int, thread: int) -> bool:
            return thread != loop_thread

    assert await pipeline.run(None, Ctx(value=3)) is True


async def test_run_accepts_context_keyword_or_alone() -> None:
    pipeline = Pipeline()

    class One(pipeline.Base):
        @pipeline.step(0)
        async def only(self, ctx: Ctx) -> int:
            return ctx.value

    assert await pipeline.run(context=Ctx(value=4)) == 4
    assert await pipeline.run(Ctx(value=5)) == 5
    with pytest.raises(TypeError, match="context is missing"):
        await pipeline.run(uuid4())


async def test_each_run_gets_its_own_instance() -> None:
    pipeline = Pipeline()

    class Stateful(pipeline.Base):
        def __init__(self) -> None:
            self.seen: list[int] = []

        @pipeline.step(0)
        async def a(self, ctx: Ctx) -> int:
            self.seen.append(ctx.value)
            return ctx.value

        @pipeline.step(1)
        async def b(self, x: int) -> int:
            return len(self.seen)

    assert [await pipeline.run(None, Ctx(value=i)) for i in range(3)] == [1, 1, 1]


async def test_failing_step_raises_its_own_exception_and_stops() -> None:
    pipeline = Pipeline()
    ran: list[str] = []

    class Failing(pipeline.Base):
        @pipeline.step(0)
        async def ok(self, ctx: Ctx) -> int:
            ran.append("ok")
            return 1

        @pipeline.step(1)
        async def boom(self, x: int) -> int:
            raise ValueError("bad input")

        @pipeline.step(2)
        async def never(self, x: int) -> int:
            ran.append("never")
            return x

    with pytest.raises(ValueError, match="bad input") as info:
        await pipeline.run(None, Ctx(value=1))
    assert ran == ["ok"]
    assert "step 'boom' (2/3)" in "".join(getattr(info.value, "__notes__", []))


async def test_no_activity_without_agent_id(memory: None) -> None:
    pipeline = Pipeline()

    class Quiet(pipeline.Base):
        @pipeline.step(0)
        async def only(self, ctx: Ctx) -> int:
            return ctx.value

    before = (await ax.activity.alist()).total
    assert await pipeline.run(None, Ctx(value=1)) == 1
    assert (await ax.activity.alist()).total == before


async def test_progress_per_step_in_the_activity(memory: None) -> None:
    pipeline = Pipeline()

    class Tracked(pipeline.Base):
        @pipeline.step(0, description="Gather sources")
        async def gather(self, ctx: Ctx) -> int:
            return ctx.value

        @pipeline.step(1, description="Analyze")
        async def analyze(self, x: int) -> int:
            return x + 1

        @pipeline.step(2)
        async def report(self, x: int) -> str:
            return str(x)

    agent_id = await ax.activity.acreate("tracked", "Waiting to start.")
    assert await pipeline.run(agent_id, Ctx(value=1)) == "2"
    detail = await ax.activity.adetail(agent_id)
    assert detail is not None
    steps = [(log.message, log.percentage) for log in detail.logs if log.message.startswith("Step ")]
    assert steps == [
        ("Step 1/3: Gather sources", 0),
        ("Step 2/3: Analyze", 33),
        ("Step 3/3: report", 66),
    ]
    assert detail.status is ax.Status.COMPLETE
    assert detail.latest_percentage == 100


async def test_activity_created_when_absent_and_error_names_the_step(memory: None) -> None:
    pipeline = Pipeline()

    class Breaks(pipeline.Base):
        @pipeline.step(0)
        async def fine(self, ctx: Ctx) -> int:
            return 1

        @pipeline.step(1, description="Call the flaky API")
        async def flaky(self, x: int) -> int:
            raise RuntimeError("API down")

    agent_id = uuid4()
    with pytest.raises(RuntimeError, match="API down"):
        await pipeline.run(agent_id, Ctx(value=1))
    detail = await ax.activity.adetail(agent_id)
    assert detail is not None
    assert detail.agent_type == "breaks"
    assert detail.status is ax.Status.ERROR
    last = detail.logs[-1].message
    assert "flaky" in last and "RuntimeError: API down" in last
