"""``ax.PydanticAIRunner`` passes the runner conformance suite, on the real ``Agent.run`` (and
``Agent.run`` with an event stream handler for the streamed tests), driven by a scripted
``FunctionModel``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import agentexec as ax
import pytest
from agentexec.testing import RunnerSuite
from agentexec.testing.runner_suite import (
    USAGE_PER_CALL,
    Answer,
    RunScripted,
    ScriptedOutcome,
    ScriptStep,
    SeenCall,
    ToolCall,
)
from agentexec_pydantic_ai.testing import ModelCall, ScriptedModel, answer, tool_call
from pydantic_ai import Agent


def _turn(step: ScriptStep) -> list[Any]:
    if isinstance(step, ToolCall):
        return [tool_call(step.name, **step.arguments)]
    assert isinstance(step, Answer)
    return [answer(step.text)]


def _seen(call: ModelCall) -> SeenCall:
    return SeenCall(call.instructions, tuple(call.transcript()), call.tool_choice == "none")


class TestPydanticAIRunner(RunnerSuite):
    @pytest.fixture
    def runner_factory(self) -> Callable[..., Any]:
        return ax.PydanticAIRunner

    @pytest.fixture
    def run_scripted(self) -> RunScripted:
        async def run(
            runner: Any,
            task: str,
            script: Sequence[ScriptStep],
            *,
            max_turns: int,
            streamed: bool = False,
        ) -> ScriptedOutcome:
            model = ScriptedModel(
                [_turn(step) for step in script],
                usage_per_call=(USAGE_PER_CALL.input_tokens, USAGE_PER_CALL.output_tokens),
            )
            agent = Agent(
                "openai:gpt-4.1",
                defer_model_check=True,
                instructions="You research companies.",
                tools=[runner.tools.report_status],
            )
            if streamed:
                async with runner.run_stream_events(agent, task, max_turns=max_turns, model=model) as stream:
                    async for _ in stream:
                        pass
                output = stream.result.output
            else:
                output = (await runner.run(agent, task, max_turns=max_turns, model=model)).output
            return ScriptedOutcome(output, [_seen(c) for c in model.calls])

        return run


class TestPydanticAIRunnerOnSQLite(TestPydanticAIRunner):
    """The same suite with the activity in the SQLAlchemy store on a SQLite file."""

    @pytest.fixture
    def runner_backends(self, tmp_path: Path) -> Iterator[Any]:
        from agentexec.runtime import build_backends
        from agentexec_sqlalchemy import engine as engines
        from agentexec_sqlalchemy.activity.models import Base
        from agentexec_sqlalchemy.activity.session import clear_global_session
        from agentexec_sqlalchemy.activity.store import SQLActivityStore

        engine = engines.create_engine(f"sqlite:///{tmp_path}/activity.db")
        Base.metadata.create_all(engine)
        url = "memory://pydantic-ai-sqlite"
        backends = build_backends(
            {"queue": url, "results": url, "events": url, "activity": url},
            activity=SQLActivityStore(engine),
        )
        yield backends
        clear_global_session()
        engine.dispose()
