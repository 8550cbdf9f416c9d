"""``ax.OpenAIRunner`` beyond the conformance suite: the exact API, the SDK specifics (tool
schema, forced final answer, sessions, run options), failure handling and real streaming.

Every test drives the real ``Runner.run`` / ``Runner.run_streamed`` with a scripted model
injected through ``RunConfig(model_provider=...)``; the agents keep ``model="gpt-4.1"``.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.activity.status import Status
from agentexec.runners import DEFAULT_REPORT_STATUS_PROMPT, TokenUsage
from agentexec_openai.runner import OpenAIRunner
from agentexec_openai.testing import ScriptedModel, answer, scripted_run_config, tool_call
from agents import (
    Agent,
    FunctionTool,
    MaxTurnsExceeded,
    RunContextWrapper,
    RunHooks,
    SQLiteSession,
    function_tool,
)
from agents.result import RunResult

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("memory_backends")]

TASK = "Research the Acme Corporation"


def report(message: str, percentage: int) -> list[Any]:
    return [tool_call("report_activity", message=message, percentage=percentage)]


def make_agent(runner: OpenAIRunner, instructions: Any = "You research companies.", **kw: Any) -> Agent[Any]:
    tools = kw.pop("tools", [runner.tools.report_status])
    return Agent(name="Researcher", instructions=instructions, tools=tools, model="gpt-4.1", **kw)


async def new_activity() -> UUID:
    return await ax.activity.acreate("research", "Waiting to start.")


async def logs_of(agent_id: UUID) -> list[Any]:
    detail = await ax.activity.adetail(agent_id)
    assert detail is not None
    return detail.logs


# -- the API ---------------------------------------------------------------------------------
def test_ax_name_resolves_to_the_runner_with_the_documented_signature() -> None:
    assert ax.OpenAIRunner is OpenAIRunner
    assert issubclass(OpenAIRunner, ax.BaseAgentRunner)
    params = inspect.signature(OpenAIRunner).parameters
    assert [(p.name, p.default) for p in params.values()][:5] == [
        ("agent_id", inspect.Parameter.empty),
        ("max_turns_recovery", False),
        ("wrap_up_prompt", None),
        ("recovery_turns", 5),
        ("report_status_prompt", None),
    ]
    run = inspect.signature(OpenAIRunner.run).parameters
    assert [(n, run[n].default) for n in ("max_turns", "context")] == [("max_turns", 10), ("context", None)]
    streamed = inspect.signature(OpenAIRunner.run_streamed).parameters
    assert [(n, streamed[n].default) for n in ("max_turns", "context")] == [("max_turns", 10), ("context", None)]


def test_constructor_rejects_bad_arguments_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="recovery_turns must be at least 1"):
        OpenAIRunner(uuid.uuid4(), recovery_turns=0)
    with pytest.raises(ValueError, match="agent_id must be the task's UUID"):
        OpenAIRunner("not-a-uuid")


def test_report_status_is_one_function_tool_with_the_documented_schema() -> None:
    runner = OpenAIRunner(uuid.uuid4())
    tool = runner.tools.report_status
    assert isinstance(tool, FunctionTool)
    assert tool is runner.tools.report_status, "the tool must be built once per runner"
    assert tool.name == "report_activity"
    schema = tool.params_json_schema
    assert schema["properties"]["message"]["type"] == "string"
    assert schema["properties"]["percentage"]["type"] == "integer"
    assert sorted(schema["required"]) == ["message", "percentage"]
    assert "progress" in tool.description.lower()
    assert runner.prompts.report_status == DEFAULT_REPORT_STATUS_PROMPT


# -- progress ------------------------------------------------------------------------------
async def test_two_reports_then_an_answer() -> None:
    agent_id = await new_activity()
    runner = OpenAIRunner(agent_id)
    model = ScriptedModel([report("Reading filings", 25), report("Writing summary", 80), [answer("Anvils.")]])
    result = await runner.run(make_agent(runner), TASK, run_config=scripted_run_config(model))
    assert isinstance(result, RunResult)
    assert result.final_output == "Anvils."
    logs = await logs_of(agent_id)
    progress = [(log.message, log.percentage, log.status) for log in logs if log.percentage not in (None, 0)]
    assert progress == [
        ("Reading filings", 25, Status.RUNNING),
        ("Writing summary", 80, Status.RUNNING),
    ]
    assert TokenUsage.parse(logs[-1].message) == TokenUsage(30, 15, 45, 3)
    assert logs[-1].status is Status.RUNNING, "the usage log must not change the status"
    assert model.calls[1].transcript()[-1] == "tool_result: Progress recorded."


async def test_a_failing_activity_store_is_logged_and_the_agent_carries_on(
    memory_backends: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class DownStore:
        def __getattr__(self, name: str) -> Any:
            return getattr(memory_backends.activity, name)

        async def aappend(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("database is down")

    from agentexec import runtime

    runtime.set_backends(memory_backends.with_(activity=DownStore()))
    runner = OpenAIRunner(uuid.uuid4())
    model = ScriptedModel([report("Working", 50), [answer("done anyway")]])
    with caplog.at_level(logging.WARNING, logger="agentexec.runners"):
        result = await runner.run(make_agent(runner), TASK, run_config=scripted_run_config(model))
    assert result.final_output == "done anyway"
    assert "could not be recorded" in model.calls[1].transcript()[-1]
    assert any("database is down" in (r.exc_text or "") for r in caplog.records)


# -- prompts -------------------------------------------------------------------------------
async def test_custom_report_status_prompt_reaches_the_instructions_once() -> None:
    prompt = "Report progress after each source. Code 5521."
    runner = OpenAIRunner(await new_activity(), report_status_prompt=prompt)
    assert runner.prompts.report_status == prompt
    # the user already put it in: it is not added again
    agent = make_agent(runner, instructions=f"You research.\n\n{runner.prompts.report_status}")
    model = ScriptedModel([[answer("ok")]])
    await runner.run(agent, TASK, run_config=scripted_run_config(model))
    assert (model.calls[0].instructions or "").count(prompt) == 1
    # the user left it out: the runner appends it, on a clone
    bare = make_agent(runner, instructions="You research.")
    model = ScriptedModel([[answer("ok")]])
    await runner.run(bare, TASK, run_config=scripted_run_config(model))
    assert model.calls[0].instructions == f"You research.\n\n{prompt}"
    assert bare.instructions == "You research.", "the caller's agent must not change"


async def test_dynamic_instructions_get_the_prompt_too() -> None:
    runner = OpenAIRunner(await new_activity())

    async def instructions(ctx: RunContextWrapper[Any], agent: Agent[Any]) -> str:
        return f"You research {ctx.context['company']}."

    model = ScriptedModel([[answer("ok")]])
    await runner.run(
        make_agent(runner, instructions=instructions), TASK,
        context={"company": "Acme"}, run_config=scripted_run_config(model),
    )
    assert model.calls[0].instructions == f"You research Acme.\n\n{DEFAULT_REPORT_STATUS_PROMPT}"


async def test_agents_without_the_tool_or_with_an_empty_prompt_are_left_alone() -> None:
    runner = OpenAIRunner(await new_activity())
    model = ScriptedModel([[answer("ok")]])
    await runner.run(make_agent(runner, tools=[]), TASK, run_config=scripted_run_config(model))
    assert model.calls[0].instructions == "You research companies."

    quiet = OpenAIRunner(await new_activity(), report_status_prompt="")
    model = ScriptedModel([[answer("ok")]])
    await quiet.run(make_agent(quiet), TASK, run_config=scripted_run_config(model))
    assert model.calls[0].instructions == "You research companies."


# -- max-turns recovery --------------------------------------------------------------------
async def test_recovery_sees_task_then_tool_history_then_wrap_up_and_answers() -> None:
    agent_id = await new_activity()
    runner = OpenAIRunner(agent_id, max_turns_recovery=True, wrap_up_prompt="Summarize now.")
    model = ScriptedModel([report("Searching", 10), report("Still searching", 30), [answer("Summary.")]])
    result = await runner.run(make_agent(runner), TASK, max_turns=2, run_config=scripted_run_config(model))
    assert result.final_output == "Summary."
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
    assert [i.get("role") for i in result.to_input_list() if "role" in i][:1] == ["user"]


async def test_last_recovery_turn_forces_an_answer_with_tool_choice_none() -> None:
    runner = OpenAIRunner(await new_activity(), max_turns_recovery=True, recovery_turns=3)
    steps = [report(f"step {i}", i) for i in range(4)] + [[answer("Forced answer.")]]
    model = ScriptedModel(steps)
    result = await runner.run(make_agent(runner), TASK, max_turns=2, run_config=scripted_run_config(model))
    assert result.final_output == "Forced answer."
    assert [c.tool_choice for c in model.calls] == [None, None, None, None, "none"]
    assert "report_activity" in model.calls[-1].tools, "the history refers to the tools; keep them"
    wrap_ups = [line for line in model.calls[-1].transcript() if line == f"user: {runner.prompts.wrap_up}"]
    assert len(wrap_ups) == 1, "the wrap-up prompt is sent once, not once per recovery stage"


async def test_exhausted_recovery_raises_max_turns_with_a_message_that_says_what_to_do() -> None:
    agent_id = await new_activity()
    runner = OpenAIRunner(agent_id, max_turns_recovery=True, recovery_turns=2)
    model = ScriptedModel([report(f"step {i}", i) for i in range(4)])
    with pytest.raises(MaxTurnsExceeded, match=r"recovery did not get a final answer within 2") as info:
        await runner.run(make_agent(runner), TASK, max_turns=2, run_config=scripted_run_config(model))
    assert info.value.run_data is not None
    assert len(model.calls) == 4
    assert TokenUsage.parse((await logs_of(agent_id))[-1].message) == TokenUsage(40, 20, 60, 4)


async def test_without_recovery_the_sdk_error_propagates_unchanged() -> None:
    runner = OpenAIRunner(await new_activity())
    model = ScriptedModel([report("a", 1), report("b", 2)])
    with pytest.raises(MaxTurnsExceeded, match=r"^Max turns \(2\) exceeded$"):
        await runner.run(make_agent(runner), TASK, max_turns=2, run_config=scripted_run_config(model))
    assert len(model.calls) == 2


async def test_recovery_with_a_session_does_not_resend_the_history() -> None:
    runner = OpenAIRunner(await new_activity(), max_turns_recovery=True)
    session = SQLiteSession(f"s-{uuid.uuid4().hex}")
    model = ScriptedModel([report("a", 10), [answer("done")]])
    result = await runner.run(
        make_agent(runner), TASK, max_turns=1, session=session, run_config=scripted_run_config(model)
    )
    assert result.final_output == "done"
    seen = model.calls[1].transcript()
    assert seen.count(f"user: {TASK}") == 1
    assert sum(line.startswith("tool_call:") for line in seen) == 1
    assert seen[-1] == f"user: {runner.prompts.wrap_up}"


async def test_context_reaches_tools_in_the_recovery_run_too() -> None:
    seen: list[str] = []

    @function_tool
    def lookup(ctx: RunContextWrapper[dict[str, str]], query: str) -> str:
        """Look something up."""
        seen.append(f"{ctx.context['user']}:{query}")
        return "found"

    runner = OpenAIRunner(await new_activity(), max_turns_recovery=True)
    agent = make_agent(runner, tools=[runner.tools.report_status, lookup])
    model = ScriptedModel([[tool_call("lookup", query="a")], [tool_call("lookup", query="b")], [answer("ok")]])
    await runner.run(agent, TASK, max_turns=1, context={"user": "ann"}, run_config=scripted_run_config(model))
    assert seen == ["ann:a", "ann:b"]


# -- injection and pass-through -------------------------------------------------------------
async def test_constructor_run_config_is_the_default_and_a_call_can_override_it() -> None:
    default_model = ScriptedModel([[answer("from default")]])
    runner = OpenAIRunner(await new_activity(), run_config=scripted_run_config(default_model))
    assert (await runner.run(make_agent(runner), TASK)).final_output == "from default"
    other = ScriptedModel([[answer("from call")]])
    result = await runner.run(make_agent(runner), TASK, run_config=scripted_run_config(other))
    assert result.final_output == "from call"
    assert len(default_model.calls) == 1


async def test_runner_options_pass_through_to_the_sdk() -> None:
    started: list[str] = []

    class Hooks(RunHooks[Any]):
        async def on_agent_start(self, context: Any, agent: Agent[Any]) -> None:
            started.append(agent.name)

    runner = OpenAIRunner(await new_activity())
    model = ScriptedModel([[answer("ok")]])
    await runner.run(make_agent(runner), TASK, hooks=Hooks(), run_config=scripted_run_config(model))
    assert started == ["Researcher"]


async def test_without_the_scripted_provider_nothing_reaches_the_network() -> None:
    runner = OpenAIRunner(await new_activity())
    with pytest.raises(Exception, match=r"(?i)api key|credentials"):
        await runner.run(make_agent(runner), TASK)


# -- streaming -----------------------------------------------------------------------------
async def test_streaming_records_progress_while_the_run_is_still_going() -> None:
    agent_id = await new_activity()
    runner = OpenAIRunner(agent_id)
    model = ScriptedModel([report("Halfway", 50), [answer("streamed")]])
    streamed = runner.run_streamed(make_agent(runner), TASK, run_config=scripted_run_config(model))
    recorded_mid_stream: list[int | None] = []
    kinds: list[str] = []
    with anyio.fail_after(10):
        async for event in streamed.stream_events():
            kinds.append(event.type)
            if event.type == "run_item_stream_event" and event.item.type == "tool_call_output_item":
                recorded_mid_stream = [log.percentage for log in await logs_of(agent_id)]
                assert not streamed.is_complete
    assert 50 in recorded_mid_stream
    assert "raw_response_event" in kinds
    assert streamed.final_output == "streamed"
    assert all(call.streamed for call in model.calls)
    assert TokenUsage.parse((await logs_of(agent_id))[-1].message) == TokenUsage(20, 10, 30, 2)
    with pytest.raises(RuntimeError, match="only once"):
        async for _ in streamed.stream_events():
            pass


async def test_awaiting_a_streamed_run_consumes_it_and_recovers() -> None:
    agent_id = await new_activity()
    runner = OpenAIRunner(agent_id, max_turns_recovery=True)
    model = ScriptedModel([report("a", 10), [answer("wrapped")]])
    with anyio.fail_after(10):
        streamed = await runner.run_streamed(
            make_agent(runner), TASK, max_turns=1, run_config=scripted_run_config(model)
        )
    assert streamed.final_output == "wrapped"
    assert len(streamed.runs) == 2
    assert model.calls[1].transcript()[-1] == f"user: {runner.prompts.wrap_up}"
    messages = [log.message for log in await logs_of(agent_id)]
    assert any(m.startswith("Max turns (1) reached; recovering") for m in messages)
    assert await streamed is streamed, "awaiting a finished stream gives it back"


async def test_streamed_run_without_recovery_raises_from_the_stream() -> None:
    agent_id = await new_activity()
    runner = OpenAIRunner(agent_id)
    model = ScriptedModel([report("a", 10)])
    streamed = runner.run_streamed(make_agent(runner), TASK, max_turns=1, run_config=scripted_run_config(model))
    with anyio.fail_after(10), pytest.raises(MaxTurnsExceeded):
        async for _ in streamed.stream_events():
            pass
    assert TokenUsage.parse((await logs_of(agent_id))[-1].message) == TokenUsage(10, 5, 15, 1)
