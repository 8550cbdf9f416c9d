"""``ax.OpenAIRunner`` passes the runner conformance suite, on the real ``Runner.run``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
