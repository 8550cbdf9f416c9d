"""``ax.PydanticAIRunner`` on the real ``Agent.run``, driven by a scripted ``FunctionModel``
(:class:`agentexec_pydantic_ai.testing.ScriptedModel`): no network, no API key."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from typing import Any
from uuid import UUID

import agentexec as ax
import pytest
from agentexec.activity.schemas import ActivityLogSchema
from agentexec.activity.status import Status
from agentexec.runners import DEFAULT_REPORT_STATUS_PROMPT, TokenUsage
from agentexec_pydantic_ai.runner import PydanticAIRunner
from agentexec_pydantic_ai.testing import (
    ScriptedModel,
    ScriptExhausted,
    answer,
    final_result,
    tool_call,
)
from pydantic import BaseModel
from pydantic_ai import Agent, ModelRetry, RunContext, Tool
from pydantic_ai.exceptions import UsageLimitExceeded, UserError
from pydantic_ai.usage import RunUsage, UsageLimits

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("memory_backends")]

TASK = "Research the Acme Corporation"


def report(message: str, percentage: int) -> list[Any]:
    return [tool_call("report_activity", message=message, percentage=percentage)]


def make_agent(runner: PydanticAIRunner, **kwargs: Any) -> Agent[Any, Any]:
    kwargs.setdefault("instructions", "You research companies.")
    kwargs.setdefault("tools", [runner.tools.report_status])
    return Agent("openai:gpt-4.1", defer_model_check=True, **kwargs)


async def new_activity() -> UUID:
    return await ax.activity.acreate("research", "Waiting to start.")


async def logs_of(agent_id: UUID) -> list[ActivityLogSchema]:
    detail = await ax.activity.adetail(agent_id)
    assert detail is not None
    return detail.logs


def usages(logs: list[ActivityLogSchema]) -> list[TokenUsage]:
    return [u for log in logs if (u := TokenUsage.parse(log.message)) is not None]


# -- the plugin and the ax namespace -------------------------------------------------------------
def test_ax_name_resolves_through_the_plugin_and_only_then_imports_pydantic_ai() -> None:
    code = (
        "import sys, agentexec as ax\n"
        "before = 'pydantic_ai' in sys.modules\n"
        "from agentexec_pydantic_ai.runner import PydanticAIRunner\n"
        "print(before, ax.PydanticAIRunner is PydanticAIRunner)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_the_runner_is_listed_under_its_name() -> None:
    from agentexec.plugins import get_registry

    spec = get_registry().runners()["pydantic-ai"]
    assert spec.load() is PydanticAIRunner


# -- the tool and the prompt ---------------------------------------------------------------------
async def test_report_status_is_one_pydantic_ai_tool_per_runner() -> None:
    runner = PydanticAIRunner(uuid.uuid4())
    tool = runner.tools.report_status
    assert isinstance(tool, Tool)
    assert tool.name == "report_activity"
    assert runner.tools.report_status is tool
    assert PydanticAIRunner(uuid.uuid4()).tools.report_status is not tool


async def test_prompt_is_added_once_to_an_agent_with_the_tool_only() -> None:
    runner = PydanticAIRunner(await new_activity())
    with_tool = ScriptedModel([[answer("a")]])
    await runner.run(make_agent(runner), TASK, model=with_tool)
    seen = with_tool.calls[0].instructions or ""
    # pydantic-ai joins instruction parts with one or two newlines, depending on its version
    assert seen.startswith("You research companies.\n") and seen.endswith(DEFAULT_REPORT_STATUS_PROMPT)
    assert seen.count(DEFAULT_REPORT_STATUS_PROMPT) == 1

    already = ScriptedModel([[answer("a")]])
    agent = make_agent(runner, instructions=f"You research.\n\n{runner.prompts.report_status}")
    await runner.run(agent, TASK, model=already)
    assert (already.calls[0].instructions or "").count(DEFAULT_REPORT_STATUS_PROMPT) == 1

    without_tool = ScriptedModel([[answer("a")]])
    await runner.run(make_agent(runner, tools=[]), TASK, model=without_tool)
    assert without_tool.calls[0].instructions == "You research companies."

    opted_out = PydanticAIRunner(await new_activity(), report_status_prompt="")
    silent = ScriptedModel([[answer("a")]])
    await opted_out.run(make_agent(opted_out), TASK, model=silent)
    assert silent.calls[0].instructions == "You research companies."


async def test_prompt_joins_the_runs_own_instructions_and_a_run_time_toolset() -> None:
    from pydantic_ai.toolsets import FunctionToolset

    runner = PydanticAIRunner(await new_activity())
    model = ScriptedModel([report("Working", 50), [answer("done")]])
    agent = make_agent(runner, tools=[])
    result = await runner.run(
        agent, TASK, model=model, instructions="Be brief.",
        toolsets=[FunctionToolset([runner.tools.report_status])],
    )
    assert result.output == "done"
    parts = [p for p in (model.calls[0].instructions or "").split("\n") if p]
    assert parts[:2] == ["You research companies.", "Be brief."]
    assert "\n".join(parts[2:]) == DEFAULT_REPORT_STATUS_PROMPT
    assert "report_activity" in model.calls[0].function_tools


# -- progress ---------------------------------------------------------------------------------
async def test_progress_reports_become_running_logs_and_the_model_is_told() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id)
    model = ScriptedModel([report("Reading filings", 20), report("Way over", 250), [answer("Acme makes anvils.")]])
    result = await runner.run(make_agent(runner), TASK, model=model)
    assert result.output == "Acme makes anvils."
    logs = await logs_of(agent_id)
    running = [(log.message, log.percentage) for log in logs if log.status is Status.RUNNING and log.percentage is not None]
    assert running == [("Reading filings", 20), ("Way over", 100)]
    assert model.calls[1].transcript()[-1] == "tool_result: Progress recorded."
    assert model.calls[2].transcript()[-1] == (
        "tool_result: Progress recorded (percentage 250 is outside 0-100; recorded as 100)."
    )
    assert usages(logs) == [TokenUsage(30, 15, 45, 3)]


async def test_a_failing_activity_store_is_logged_and_the_agent_carries_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from agentexec import activity

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the store is down")

    runner = PydanticAIRunner(await new_activity())
    monkeypatch.setattr(activity, "aupdate", broken)
    model = ScriptedModel([report("Working", 50), [answer("done anyway")]])
    with caplog.at_level(logging.WARNING, logger="agentexec.runners"):
        result = await runner.run(make_agent(runner), TASK, model=model)
    assert result.output == "done anyway"
    assert model.calls[1].transcript()[-1] == (
        "tool_result: Progress could not be recorded right now; carry on with the task."
    )
    assert any("could not record 'Working'" in r.getMessage() for r in caplog.records)


# -- structured output --------------------------------------------------------------------------
class Briefing(BaseModel):
    company: str
    facts: list[str]


async def test_structured_output_passes_through() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id)
    model = ScriptedModel([report("Drafting", 60), [final_result(company="Acme", facts=["anvils"])]])
    result = await runner.run(make_agent(runner, output_type=Briefing), TASK, model=model)
    assert result.output == Briefing(company="Acme", facts=["anvils"])
    assert model.calls[0].output_tools, "the agent's output tool was offered"
    assert usages(await logs_of(agent_id)) == [TokenUsage(20, 10, 30, 2)]


async def test_output_type_given_to_the_run_passes_through() -> None:
    runner = PydanticAIRunner(await new_activity())
    model = ScriptedModel([[final_result(company="Acme", facts=[])]])
    result = await runner.run(make_agent(runner), TASK, model=model, output_type=Briefing)
    assert isinstance(result.output, Briefing)


async def test_forced_wrap_up_keeps_the_output_tool_for_a_structured_answer() -> None:
    runner = PydanticAIRunner(await new_activity(), max_turns_recovery=True, recovery_turns=1)
    model = ScriptedModel([report("a", 10), [final_result(company="Acme", facts=["partial"])]])
    result = await runner.run(make_agent(runner, output_type=Briefing), TASK, model=model, max_turns=1)
    assert result.output == Briefing(company="Acme", facts=["partial"])
    assert model.calls[1].tool_choice == "none"
    assert model.calls[1].output_tools


# -- turn-limit recovery -------------------------------------------------------------------------
async def test_recovery_continues_the_conversation_with_the_wrap_up_prompt() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id, max_turns_recovery=True, wrap_up_prompt="Summarize now.")
    model = ScriptedModel([report("Reading", 10), report("Searching", 30), [answer("Summary.")]])
    result = await runner.run(make_agent(runner), TASK, max_turns=2, model=model)
    assert result.output == "Summary."
    assert len(model.calls) == 3
    seen = model.calls[2].transcript()
    assert seen[0] == f"user: {TASK}"
    assert [line.split(" ", 2)[:2] for line in seen[1:5]] == [
        ["tool_call:", "report_activity"], ["tool_result:", "Progress"],
        ["tool_call:", "report_activity"], ["tool_result:", "Progress"],
    ]
    assert seen[5:] == ["user: Summarize now."]
    assert model.calls[2].tool_choice is None, "the first recovery turns keep tools usable"
    messages = [log.message for log in await logs_of(agent_id)]
    assert "Max turns (2) reached; recovering: asking the agent to wrap up within 5 more turns." in messages
    assert TokenUsage.parse(messages[-1]) == TokenUsage(30, 15, 45, 3)
    # the whole conversation is in the result
    assert [m.kind for m in result.all_messages()].count("response") == 3


async def test_last_recovery_turn_forces_an_answer_with_tool_choice_none() -> None:
    runner = PydanticAIRunner(await new_activity(), max_turns_recovery=True, recovery_turns=3)
    model = ScriptedModel([*(report(f"step {i}", i) for i in range(4)), [answer("Forced answer.")]])
    result = await runner.run(make_agent(runner), TASK, max_turns=2, model=model)
    assert result.output == "Forced answer."
    assert [c.tool_choice for c in model.calls] == [None, None, None, None, "none"]
    assert "report_activity" in model.calls[-1].function_tools, "the history refers to the tools; keep them"
    wrap_ups = [line for line in model.calls[-1].transcript() if line == f"user: {runner.prompts.wrap_up}"]
    assert len(wrap_ups) == 1, "the wrap-up prompt is sent once, not once per recovery stage"


async def test_exhausted_recovery_raises_with_a_message_that_says_what_to_do() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id, max_turns_recovery=True, recovery_turns=2)
    model = ScriptedModel([report(f"step {i}", i) for i in range(4)])
    with pytest.raises(UsageLimitExceeded, match=r"recovery did not get a final answer within 2") as info:
        await runner.run(make_agent(runner), TASK, max_turns=2, model=model)
    assert isinstance(info.value.__cause__, UsageLimitExceeded)
    assert len(model.calls) == 4
    assert TokenUsage.parse((await logs_of(agent_id))[-1].message) == TokenUsage(40, 20, 60, 4)


async def test_without_recovery_pydantic_ais_error_propagates_unchanged() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id)
    model = ScriptedModel([report("a", 1), report("b", 2)])
    with pytest.raises(UsageLimitExceeded, match=r"^The next request would exceed the request_limit of 2"):
        await runner.run(make_agent(runner), TASK, max_turns=2, model=model)
    assert len(model.calls) == 2
    assert usages(await logs_of(agent_id)) == [TokenUsage(20, 10, 30, 2)]


async def test_token_budgets_are_not_turn_limits_and_are_never_recovered() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id, max_turns_recovery=True)
    model = ScriptedModel([report("a", 1), report("b", 2), [answer("never")]])
    with pytest.raises(UsageLimitExceeded, match="total_tokens_limit"):
        await runner.run(
            make_agent(runner), TASK, model=model, usage_limits=UsageLimits(total_tokens_limit=20)
        )
    messages = [log.message for log in await logs_of(agent_id)]
    assert not any("recovering" in m for m in messages)
    assert usages(await logs_of(agent_id)) == [TokenUsage(20, 10, 30, 2)]


async def test_max_turns_none_keeps_the_request_limit_of_usage_limits() -> None:
    runner = PydanticAIRunner(await new_activity(), max_turns_recovery=True, wrap_up_prompt="Stop.")
    model = ScriptedModel([report("a", 1), [answer("wrapped")]])
    result = await runner.run(
        make_agent(runner), TASK, model=model, max_turns=None, usage_limits=UsageLimits(request_limit=1)
    )
    assert result.output == "wrapped"
    assert model.calls[1].transcript()[-1] == "user: Stop."


async def test_deps_reach_tools_in_the_recovery_run_too() -> None:
    seen: list[str] = []

    async def lookup(ctx: RunContext[dict[str, str]], query: str) -> str:
        """Look something up."""
        seen.append(f"{ctx.deps['user']}:{query}")
        return "found"

    runner = PydanticAIRunner(await new_activity(), max_turns_recovery=True)
    agent = make_agent(runner, tools=[runner.tools.report_status, lookup], deps_type=dict)
    model = ScriptedModel([[tool_call("lookup", query="a")], [tool_call("lookup", query="b")], [answer("ok")]])
    await runner.run(agent, TASK, max_turns=1, deps={"user": "ann"}, model=model)
    assert seen == ["ann:a", "ann:b"]


async def test_a_callers_usage_accumulates_every_run_and_the_activity_gets_this_calls_share() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id, max_turns_recovery=True)
    usage = RunUsage(requests=7, input_tokens=100, output_tokens=50)
    model = ScriptedModel([report("a", 1), [answer("ok")]])
    await runner.run(make_agent(runner), TASK, max_turns=1, usage=usage, model=model)
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (9, 120, 60)
    assert usages(await logs_of(agent_id)) == [TokenUsage(20, 10, 30, 2)]


# -- failing tools and models ---------------------------------------------------------------------
async def test_a_tool_asking_for_a_retry_is_told_to_the_model_and_the_run_goes_on() -> None:
    async def lookup(query: str) -> str:
        """Look something up."""
        if query == "bad":
            raise ModelRetry("no such company; try another name")
        return "found"

    runner = PydanticAIRunner(await new_activity())
    agent = make_agent(runner, tools=[runner.tools.report_status, lookup])
    model = ScriptedModel([[tool_call("lookup", query="bad")], [tool_call("lookup", query="acme")], [answer("ok")]])
    assert (await runner.run(agent, TASK, model=model)).output == "ok"
    assert "no such company" in model.calls[1].transcript()[-1]


async def test_a_tool_that_raises_fails_the_run_and_the_tokens_are_still_logged() -> None:
    async def lookup(query: str) -> str:
        """Look something up."""
        raise RuntimeError("search backend is down")

    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id, max_turns_recovery=True)
    agent = make_agent(runner, tools=[runner.tools.report_status, lookup])
    model = ScriptedModel([report("Searching", 10), [tool_call("lookup", query="acme")], [answer("never")]])
    with pytest.raises(RuntimeError, match="search backend is down"):
        await runner.run(agent, TASK, model=model)
    logs = await logs_of(agent_id)
    assert [(log.message, log.percentage) for log in logs if log.percentage == 10] == [("Searching", 10)]
    assert usages(logs) == [TokenUsage(20, 10, 30, 2)]
    assert not any("recovering" in log.message for log in logs)


async def test_a_model_that_runs_out_of_script_is_not_a_turn_limit() -> None:
    runner = PydanticAIRunner(await new_activity(), max_turns_recovery=True)
    with pytest.raises(ScriptExhausted):
        await runner.run(make_agent(runner), TASK, model=ScriptedModel([report("a", 1)]))


# -- injection --------------------------------------------------------------------------------------
async def test_constructor_model_is_the_default_and_a_call_can_override_it() -> None:
    default_model = ScriptedModel([[answer("from default")]])
    runner = PydanticAIRunner(await new_activity(), model=default_model)
    assert (await runner.run(make_agent(runner), TASK)).output == "from default"
    other = ScriptedModel([[answer("from call")]])
    assert (await runner.run(make_agent(runner), TASK, model=other)).output == "from call"
    assert len(default_model.calls) == 1


async def test_without_the_scripted_model_nothing_reaches_the_network() -> None:
    runner = PydanticAIRunner(await new_activity())
    # no key: pydantic-ai refuses to build the OpenAI provider (or, without the openai
    # package, to import it) before any request
    with pytest.raises((UserError, ImportError), match=r"OPENAI_API_KEY|openai"):
        await runner.run(make_agent(runner), TASK)


async def test_max_turns_must_be_a_positive_int() -> None:
    runner = PydanticAIRunner(uuid.uuid4())
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="max_turns"):
            await runner.run(make_agent(runner), TASK, max_turns=bad)  # type: ignore[arg-type]
