"""``PydanticAIRunner.run_stream_events`` and cancellation: a streamed run records progress while
it runs, recovers like ``run``, and a cancelled scope stops a run (streamed or not) cleanly."""

from __future__ import annotations

import time
import uuid
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.activity.schemas import ActivityLogSchema
from agentexec.runners import TokenUsage
from agentexec_pydantic_ai.runner import PydanticAIRunner
from agentexec_pydantic_ai.testing import ScriptedModel, answer, final_result, tool_call
from pydantic import BaseModel
from pydantic_ai import Agent, AgentRunResultEvent, FunctionToolResultEvent
from pydantic_ai.exceptions import UsageLimitExceeded

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


# -- streaming ---------------------------------------------------------------------------------
async def test_streaming_records_progress_while_the_run_is_still_going() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id)
    model = ScriptedModel([report("Halfway", 50), [answer("streamed")]])
    recorded_mid_stream: list[int | None] = []
    kinds: list[str] = []
    with anyio.fail_after(10):
        async with runner.run_stream_events(make_agent(runner), TASK, model=model) as stream:
            async for event in stream:
                kinds.append(type(event).__name__)
                if isinstance(event, FunctionToolResultEvent):
                    recorded_mid_stream = [log.percentage for log in await logs_of(agent_id)]
                    assert not stream.is_complete
    assert 50 in recorded_mid_stream
    assert "PartStartEvent" in kinds and "FunctionToolCallEvent" in kinds
    assert kinds[-1] == "AgentRunResultEvent"
    assert stream.result.output == "streamed"
    assert all(call.streamed for call in model.calls)
    assert usages(await logs_of(agent_id)) == [TokenUsage(20, 10, 30, 2)]


async def test_a_streamed_run_recovers_and_ends_with_the_recovery_runs_result() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id, max_turns_recovery=True)
    model = ScriptedModel([report("a", 10), [answer("wrapped")]])
    results: list[Any] = []
    with anyio.fail_after(10):
        async with runner.run_stream_events(make_agent(runner), TASK, max_turns=1, model=model) as stream:
            async for event in stream:
                if isinstance(event, AgentRunResultEvent):
                    results.append(event.result.output)
    assert results == ["wrapped"], "one result event, for the whole call"
    assert stream.result.output == "wrapped"
    assert model.calls[1].transcript()[-1] == f"user: {runner.prompts.wrap_up}"
    messages = [log.message for log in await logs_of(agent_id)]
    assert any(m.startswith("Max turns (1) reached; recovering") for m in messages)
    assert usages(await logs_of(agent_id)) == [TokenUsage(20, 10, 30, 2)]


async def test_structured_output_streams_too() -> None:
    class Briefing(BaseModel):
        company: str

    runner = PydanticAIRunner(await new_activity())
    model = ScriptedModel([[final_result(company="Acme")]])
    with anyio.fail_after(10):
        async with runner.run_stream_events(make_agent(runner, output_type=Briefing), TASK, model=model) as stream:
            async for _ in stream:
                pass
    assert stream.result.output == Briefing(company="Acme")


async def test_a_streamed_run_without_recovery_raises_from_the_stream() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id)
    model = ScriptedModel([report("a", 10)])
    with anyio.fail_after(10), pytest.raises(UsageLimitExceeded, match="request_limit of 1"):
        async with runner.run_stream_events(make_agent(runner), TASK, max_turns=1, model=model) as stream:
            async for _ in stream:
                pass
    assert usages(await logs_of(agent_id)) == [TokenUsage(10, 5, 15, 1)]


async def test_misuse_is_reported_plainly() -> None:
    runner = PydanticAIRunner(await new_activity())
    agent = make_agent(runner)

    async def handler(ctx: Any, events: Any) -> None:
        pass

    with pytest.raises(TypeError, match="event_stream_handler"):
        runner.run_stream_events(agent, TASK, event_stream_handler=handler)
    stream = runner.run_stream_events(
        agent, TASK, model=ScriptedModel([[answer("x")]]), event_stream_handler=None
    )
    with pytest.raises(RuntimeError, match="async with"):
        await stream.__anext__()
    with anyio.fail_after(10):
        async with stream:
            with pytest.raises(RuntimeError, match="not finished"):
                _ = stream.result
            async for _ in stream:
                pass
    with pytest.raises(RuntimeError, match="only once"):
        async with stream:
            pass


# -- cancellation ---------------------------------------------------------------------------------
class Blocker:
    """A tool that waits forever, and notes how it ended."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = False

    async def wait(self, query: str) -> str:
        """Wait for something that never comes."""
        self.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        return "never"


async def test_a_cancelled_scope_stops_a_run_cleanly_and_the_tokens_spent_are_logged() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id, max_turns_recovery=True)
    blocker = Blocker()
    agent = make_agent(runner, tools=[runner.tools.report_status, blocker.wait])
    model = ScriptedModel([report("Starting", 10), [tool_call("wait", query="x")], [answer("never")]])
    started = time.monotonic()
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                async def cancel_when_blocked() -> None:
                    await blocker.started.wait()
                    scope.cancel()

                tg.start_soon(cancel_when_blocked)
                await runner.run(agent, TASK, model=model)
    assert scope.cancelled_caught, "the cancellation was not swallowed or turned into an error"
    assert time.monotonic() - started < 5
    assert blocker.cancelled, "the tool that was running got the cancellation"
    assert len(model.calls) == 2, "nothing ran after the cancellation"
    logs = await logs_of(agent_id)
    assert [log.percentage for log in logs if log.message == "Starting"] == [10]
    assert usages(logs) == [TokenUsage(20, 10, 30, 2)]
    assert not any("recovering" in log.message for log in logs)
    # the runner is still usable
    again = ScriptedModel([[answer("fine")]])
    assert (await runner.run(make_agent(runner), TASK, model=again)).output == "fine"


async def test_a_deadline_around_a_streamed_run_cancels_it_cleanly() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id)
    blocker = Blocker()
    agent = make_agent(runner, tools=[runner.tools.report_status, blocker.wait])
    model = ScriptedModel([report("Starting", 10), [tool_call("wait", query="x")], [answer("never")]])
    events: list[str] = []
    with anyio.fail_after(10):
        with anyio.move_on_after(0.5) as scope:
            async with runner.run_stream_events(agent, TASK, model=model) as stream:
                async for event in stream:
                    events.append(type(event).__name__)
    assert scope.cancelled_caught
    assert blocker.cancelled
    assert not stream.is_complete and "AgentRunResultEvent" not in events
    assert usages(await logs_of(agent_id)) == [TokenUsage(20, 10, 30, 2)]


async def test_leaving_a_stream_early_cancels_its_run() -> None:
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id)
    model = ScriptedModel([report("one", 10), report("two", 20), [answer("never read")]])
    with anyio.fail_after(10):
        async with runner.run_stream_events(make_agent(runner), TASK, model=model) as stream:
            async for event in stream:
                if isinstance(event, FunctionToolResultEvent):
                    break
    assert not stream.is_complete
    assert len(model.calls) == 1, "the run stopped when the consumer left"
    logs = await logs_of(agent_id)
    assert [log.message for log in logs if log.percentage == 20] == []
    assert usages(logs) == [TokenUsage(10, 5, 15, 1)]


async def test_pydantic_ais_own_timeout_passes_through() -> None:
    from pydantic_ai import exceptions

    RunTimedOut = getattr(exceptions, "RunTimedOut", None)
    if RunTimedOut is None:
        pytest.skip("this pydantic-ai has no run timeout= (added in a later 2.x)")
    agent_id = await new_activity()
    runner = PydanticAIRunner(agent_id, max_turns_recovery=True)
    blocker = Blocker()
    agent = make_agent(runner, tools=[blocker.wait])
    model = ScriptedModel([[tool_call("wait", query="x")], [answer("never")]])
    with anyio.fail_after(10), pytest.raises(RunTimedOut):
        await runner.run(agent, TASK, model=model, timeout=0.3)
    assert blocker.cancelled
    assert usages(await logs_of(agent_id)) == [TokenUsage(10, 5, 15, 1)]


async def test_a_cancelled_runs_usage_write_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that hangs cannot hold up a cancellation longer than the bounded usage write."""
    from agentexec import activity
    from agentexec_pydantic_ai import call

    monkeypatch.setattr(call, "CANCELLED_USAGE_WRITE_TIMEOUT", 0.2)
    runner = PydanticAIRunner(uuid.uuid4())
    blocker = Blocker()
    agent = make_agent(runner, tools=[blocker.wait])
    model = ScriptedModel([[tool_call("wait", query="x")]])

    async def hanging(*args: Any, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    started = time.monotonic()
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                async def cancel_when_blocked() -> None:
                    await blocker.started.wait()
                    monkeypatch.setattr(activity, "aupdate", hanging)
                    scope.cancel()

                tg.start_soon(cancel_when_blocked)
                await runner.run(agent, TASK, model=model)
    assert scope.cancelled_caught
    assert time.monotonic() - started < 3
