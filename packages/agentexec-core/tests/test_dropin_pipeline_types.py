"""Issue #16: pipelines that the original agentexec rejects are rejected here too, when the class
is created: a step whose parameter model does not match the previous step's return model, and a
last step that returns a tuple. The original README's pipeline (a tuple of two models into a
step taking both) still defines and runs."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from agentexec.pipeline import Pipeline, PipelineDefinitionError


class InputContext(BaseModel):
    company: str


class ResultA(BaseModel):
    a: int = 1


class ResultB(BaseModel):
    b: int = 2


class ResultC(BaseModel):
    c: int = 3


class SpecialA(ResultA):
    pass


def test_a_model_into_a_step_annotated_with_another_model_is_rejected() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match=r"'first' returns ResultA .* 'second' takes it as x: ResultC"):

        class Bad(pipeline.Base):
            @pipeline.step(0)
            async def first(self, ctx: InputContext) -> ResultA:
                return ResultA()

            @pipeline.step(1)
            async def second(self, x: ResultC) -> ResultC:
                return x


def test_each_element_of_a_returned_tuple_is_checked() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match=r"returns ResultB .* takes it as b: ResultC"):

        class Bad(pipeline.Base):
            @pipeline.step(0)
            async def first(self, ctx: InputContext) -> tuple[ResultA, ResultB]:
                return ResultA(), ResultB()

            @pipeline.step(1)
            async def second(self, a: ResultA, b: ResultC) -> ResultC:
                return b


def test_a_last_step_returning_a_tuple_is_rejected() -> None:
    pipeline = Pipeline()
    with pytest.raises(PipelineDefinitionError, match=r"the last step 'second' returns a tuple"):

        class Bad(pipeline.Base):
            @pipeline.step(0)
            async def first(self, ctx: InputContext) -> ResultA:
                return ResultA()

            @pipeline.step(1)
            async def second(self, a: ResultA) -> tuple[ResultA, ResultB]:
                return a, ResultB()

    with pytest.raises(PipelineDefinitionError, match=r"the last step 'only' returns a tuple"):

        class AlsoBad(pipeline.Base):
            @pipeline.step(0)
            async def only(self, ctx: InputContext) -> tuple[int, int]:
                return 1, 2


def test_the_readmes_pipeline_and_subclasses_are_accepted() -> None:
    pipeline = Pipeline()

    class ResearchPipeline(pipeline.Base):
        @pipeline.step(0, "parallel research")
        async def gather_data(self, context: InputContext) -> tuple[SpecialA, ResultB]:
            return SpecialA(a=5), ResultB(b=7)

        @pipeline.step(1, "analysis")
        async def analyze(self, brand: ResultA, market: ResultB) -> ResultC:  # a subclass fits
            return ResultC(c=brand.a + market.b)

    assert asyncio.run(pipeline.run(None, InputContext(company="Anthropic"))) == ResultC(c=12)


def test_unannotated_and_plain_values_are_left_to_run_time() -> None:
    pipeline = Pipeline()

    class Fine(pipeline.Base):
        @pipeline.step(0)
        async def first(self, ctx: InputContext) -> int:
            return 1

        @pipeline.step(1)
        async def second(self, x: float) -> ResultA:  # an int into a float: not a model, not checked
            return ResultA(a=int(x))

        @pipeline.step(2)
        async def third(self, anything):  # type: ignore[no-untyped-def]
            return anything

    assert asyncio.run(pipeline.run(None, InputContext(company="x"))) == ResultA(a=1)
