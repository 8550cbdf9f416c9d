"""``ax.OpenAIRunner`` passes the runner conformance suite, on the real ``Runner.run``."""

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
from agentexec_openai.testing import (
    ModelCall,
    ScriptedModel,
    answer,
    scripted_run_config,
    tool_call,
)
from agents import Agent


def _turn(step: ScriptStep) -> list[Any]:
    if isinstance(step, ToolCall):
        return [tool_call(step.name, **step.arguments)]
    assert isinstance(step, Answer)
    return [answer(step.text)]


def _seen(call: ModelCall) -> SeenCall:
    return SeenCall(call.instructions, tuple(call.transcript()), call.tool_choice == "none")


class TestOpenAIRunner(RunnerSuite):
    @pytest.fixture
    def runner_factory(self) -> Callable[..., Any]:
        return ax.OpenAIRunner

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
                name="Researcher",
                instructions="You research companies.",
                tools=[runner.tools.report_status],
                model="gpt-4.1",
            )
            config = scripted_run_config(model)
            if streamed:
                result: Any = runner.run_streamed(agent, task, max_turns=max_turns, run_config=config)
                async for _ in result.stream_events():
                    pass
            else:
                result = await runner.run(agent, task, max_turns=max_turns, run_config=config)
            return ScriptedOutcome(result.final_output, [_seen(c) for c in model.calls])

        return run


class TestOpenAIRunnerOnSQLite(TestOpenAIRunner):
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
        url = "memory://openai-sqlite"
        backends = build_backends(
            {"queue": url, "results": url, "events": url, "activity": url},
            activity=SQLActivityStore(engine),
        )
        yield backends
        clear_global_session()
        engine.dispose()
