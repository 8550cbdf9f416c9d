"""What a pipeline class gets wrong is reported when the class is created, before anything runs."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.pipeline import Pipeline, PipelineDefinitionError


class Ctx(BaseModel):
    value: int


def test_ax_pipeline_is_the_class() -> None:
    assert ax.Pipeline is Pipeline


def test_steps_sorted_by_order_and_named() -> None:
    pipeline = Pipeline()

    class Flow(pipeline.Base):
        @pipeline.step(10)
        async def later(self, x: int) -> int:
            return x

        @pipeline.step(2, description="Fetch the data")
        async def earlier(self, ctx: Ctx) -> int:
            return ctx.value

    assert [s.name for s in pipeline.steps] == ["earlier", "later"]
    assert [s.label for s in pipeline.steps] == ["Fetch the data", "later"]
    assert pipeline.name == "flow"
    assert pipeline.context_class is Ctx


def test_mixed_int_and_str_orders_rejected_at_class_creation() -> None:
    pipeline = Pipeline()
    with pytest.raises(TypeError, match=r"mixes int and str step orders.*sorted\(\) cannot compare"):

        class Mixed(pipeline.Base):
            @pipeline.step(0)
            async def a(self, ctx: Ctx) -> int:
                return 1

            @pipeline.step("b")
            async def b(self, x: int) -> int:
                return x


def test_duplicate_order_rejected() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match="share the order 1"):

        class Dup(pipeline.Base):
            @pipeline.step(1)
            async def a(self, ctx: Ctx) -> int:
                return 1

            @pipeline.step(1)
            async def b(self, x: int) -> int:
                return x


@pytest.mark.parametrize("order", [1.5, None, True, (1,)])
def test_order_must_be_int_or_str(order: Any) -> None:
    pipeline = Pipeline()
    with pytest.raises(TypeError, match="order must be an int or a str"):
        pipeline.step(order)(lambda self, ctx: ctx)


def test_tuple_count_mismatch_reported_before_running() -> None:
    pipeline = Pipeline()
    with pytest.raises(TypeError, match=r"returns 2 values.*'expects_one' expects 1 parameter"):

        class Bad(pipeline.Base):
            @pipeline.step(0)
            async def returns_two(self, ctx: Ctx) -> tuple[int, str]:
                return 1, "a"

            @pipeline.step(1)
            async def expects_one(self, x: int) -> str:
                return str(x)


def test_single_value_into_step_without_parameters_reported() -> None:
    pipeline = Pipeline()
    with pytest.raises(TypeError, match=r"returns 1 values.*expects 0 parameter"):

        class Bad(pipeline.Base):
            @pipeline.step(0)
            async def first(self, ctx: Ctx) -> int:
                return 1

            @pipeline.step(1)
            async def second(self) -> str:
                return "no params"


class Pair(NamedTuple):
    a: int
    b: int


def test_named_tuple_counts_its_fields() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match="returns 2 values"):

        class Bad(pipeline.Base):
            @pipeline.step(0)
            async def first(self, ctx: Ctx) -> Pair:
                return Pair(1, 2)

            @pipeline.step(1)
            async def second(self, a: int, b: int, c: int) -> int:
                return a


def test_first_step_must_accept_the_context() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match="first step 'first' receives the pipeline's context"):

        class Bad(pipeline.Base):
            @pipeline.step(0)
            async def first(self, ctx: Ctx, other: int) -> int:
                return 1


def test_required_keyword_only_parameter_rejected() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match="required keyword-only parameter 'flag'"):

        class Bad(pipeline.Base):
            @pipeline.step(0)
            async def first(self, ctx: Ctx, *, flag: bool) -> int:
                return 1


@pytest.mark.parametrize(
    "annotation_ok",
    [
        "tuple[int, ...]",  # variable length: unknown count, checked at run time only
        "Any",
        "int | tuple[int, int]",
        "tuple",
    ],
)
def test_unknown_counts_are_not_guessed(annotation_ok: str) -> None:
    pipeline = Pipeline()
    namespace: dict[str, Any] = {"pipeline": pipeline, "Ctx": Ctx, "Any": Any}
    exec(
        "class Fine(pipeline.Base):\n"
        "    @pipeline.step(0)\n"
        f"    async def first(self, ctx: Ctx) -> {annotation_ok}:\n"
        "        return 1\n"
        "    @pipeline.step(1)\n"
        "    async def second(self, a, b, c):\n"
        "        return a\n",
        namespace,
    )
    assert [s.name for s in pipeline.steps] == ["first", "second"]


def test_star_args_accept_any_tuple() -> None:
    pipeline = Pipeline()

    class FanIn(pipeline.Base):
        @pipeline.step(0)
        async def fan_out(self, ctx: Ctx) -> tuple[int, int, int]:
            return 1, 2, 3

        @pipeline.step(1)
        async def fan_in(self, *results: int) -> int:
            return sum(results)

    assert pipeline.steps[1].arity.maximum is None


def test_class_without_steps_rejected() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match="has no steps"):

        class Empty(pipeline.Base):
            pass


def test_one_class_per_pipeline() -> None:
    pipeline = Pipeline()

    class First(pipeline.Base):
        @pipeline.step(0)
        async def a(self, ctx: Ctx) -> int:
            return 1

    with pytest.raises(PipelineDefinitionError, match=r"already defined by .*First"):

        class Second(pipeline.Base):
            @pipeline.step(0)
            async def a(self, ctx: Ctx) -> int:
                return 1


def test_step_of_another_pipeline_rejected() -> None:
    mine, other = Pipeline(), Pipeline()
    with pytest.raises(PipelineDefinitionError, match="another pipeline's @step"):

        class Wrong(mine.Base):
            @other.step(0)
            async def a(self, ctx: Ctx) -> int:
                return 1


def test_class_needing_constructor_arguments_rejected() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match="constructible without arguments"):

        class NeedsArgs(pipeline.Base):
            def __init__(self, tracking_id: str) -> None:
                self.tracking_id = tracking_id

            @pipeline.step(0)
            async def a(self, ctx: Ctx) -> int:
                return 1


def test_staticmethod_step_rejected() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match="cannot decorate a staticmethod"):
        pipeline.step(0)(staticmethod(lambda ctx: ctx))


def test_explicit_name() -> None:
    pipeline = Pipeline(name="research")

    class Anything(pipeline.Base):
        @pipeline.step("a")
        async def a(self, ctx: Ctx) -> int:
            return 1

    assert pipeline.name == "research"


def test_steps_from_a_mixin_are_collected() -> None:
    pipeline = Pipeline()

    class Shared:
        @pipeline.step(1)
        async def finish(self, x: int) -> int:
            return x + 1

    class Flow(Shared, pipeline.Base):
        @pipeline.step(0)
        async def start(self, ctx: Ctx) -> int:
            return ctx.value

    assert [s.name for s in pipeline.steps] == ["start", "finish"]
