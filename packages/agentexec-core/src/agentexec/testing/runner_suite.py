"""``RunnerSuite``: the shared behaviour of agent runners (:class:`agentexec.runners.BaseAgentRunner`).

The suite speaks no agent framework. It describes what the model does as a neutral script
(:class:`ToolCall` / :class:`Answer` steps) and reads back what the model was sent as
:class:`SeenCall` records; the adapter's two fixtures translate both ways::

    class TestAcmeRunner(RunnerSuite):
        @pytest.fixture
        def runner_factory(self):
            return AcmeRunner                   # called as runner_factory(agent_id, **options)

        @pytest.fixture
        def run_scripted(self):
            async def run(runner, task, script, *, max_turns, streamed=False):
                model = AcmeScriptedModel(script)      # plays the steps, one per model call
                agent = acme.Agent(tools=[runner.tools.report_status], model=model)
                result = await runner.run(agent, task, max_turns=max_turns)
                return ScriptedOutcome(result.output, [to_seen_call(c) for c in model.calls])
            return run

Rules for the scripted model: one script step per model call; a step beyond the script's end
raises an error that is NOT one of ``runner.max_turns_exceptions``; every call reports
:data:`USAGE_PER_CALL` tokens. The agent has the runner's ``report_status`` tool and short
instructions of its own. Activity goes to in-memory backends (override ``runner_backends`` to
use others). Declare ``capabilities = RunnerCapabilities(streaming=False)`` if the runner cannot
stream.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from uuid import UUID

import pytest

from agentexec.activity.schemas import ActivityLogSchema
from agentexec.activity.status import Status
from agentexec.runners import REPORT_STATUS_TOOL, BaseAgentRunner, TokenUsage
from agentexec.testing._suite import Suite
from agentexec.testing.capabilities import Capabilities

#: the tokens each scripted model call must report
USAGE_PER_CALL = TokenUsage(input_tokens=10, output_tokens=5, total_tokens=15, requests=1)

TASK = "Research the Acme Corporation"


@dataclass(frozen=True)
class ToolCall:
    """The model calls tool ``name`` with ``arguments`` (and nothing else in that turn)."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """The model answers ``text``, ending the run."""

    text: str


ScriptStep = ToolCall | Answer


def report(message: str, percentage: int) -> ToolCall:
    """A ``report_status`` call."""
    return ToolCall(REPORT_STATUS_TOOL, {"message": message, "percentage": percentage})


@dataclass(frozen=True)
class SeenCall:
    """What one model call was sent.

    ``transcript`` holds the conversation as lines: ``user: <text>``, ``assistant: <text>``,
    ``tool_call: <name> <arguments>``, ``tool_result: <text>``. ``forced_answer`` is true when
    the call forbade tool use.
    """

    instructions: str | None
    transcript: tuple[str, ...]
    forced_answer: bool = False


@dataclass
class ScriptedOutcome:
    """What ``run_scripted`` returns: the run's final output and every model call."""

    final_output: Any
    calls: list[SeenCall]


class RunScripted(Protocol):
    def __call__(
        self,
        runner: Any,
        task: str,
        script: Sequence[ScriptStep],
        *,
        max_turns: int,
        streamed: bool = False,
    ) -> Awaitable[ScriptedOutcome]: ...


@dataclass(frozen=True)
class RunnerCapabilities(Capabilities):
    """Runner features beyond the required ones (default: all)."""

    #: ``runner.run_streamed`` exists and streams (awaiting its result consumes the stream)
    streaming: bool = True


def _running_logs(logs: Sequence[ActivityLogSchema]) -> list[tuple[str, int | None]]:
    return [
        (log.message, log.percentage)
        for log in logs
        if log.status is Status.RUNNING and log.percentage is not None
    ]


def _usage_logs(logs: Sequence[ActivityLogSchema]) -> list[TokenUsage]:
    return [usage for log in logs if (usage := TokenUsage.parse(log.message)) is not None]


def _index(transcript: Sequence[str], predicate: Callable[[str], bool], what: str) -> int:
    for i, line in enumerate(transcript):
        if predicate(line):
            return i
    raise AssertionError(f"the model never saw {what}; it saw {list(transcript)}")


@pytest.mark.anyio
class RunnerSuite(Suite):
    """The conformance tests every agent runner must pass (see the module docstring)."""

    capabilities: ClassVar[Capabilities] = RunnerCapabilities()

    # -- fixtures the adapter provides -----------------------------------------------------
    @pytest.fixture
    def runner_factory(self) -> Callable[..., BaseAgentRunner]:
        pytest.fail("RunnerSuite needs a `runner_factory` fixture: (agent_id, **options) -> runner")

    @pytest.fixture
    def run_scripted(self) -> RunScripted:
        pytest.fail(
            "RunnerSuite needs a `run_scripted` fixture: async (runner, task, script, *, "
            "max_turns, streamed=False) -> ScriptedOutcome"
        )

    @pytest.fixture
    def runner_backends(self) -> Any:
        """The backends the runner writes activity to; default: fresh in-memory ones."""
        from agentexec.runtime import build_backends

        url = f"memory://runner-suite-{uuid.uuid4().hex[:8]}"
        return build_backends({"queue": url, "results": url, "events": url, "activity": url})

    @pytest.fixture(autouse=True)
    def _use_runner_backends(self, runner_backends: Any) -> Iterator[None]:
        from agentexec import runtime

        previous = runtime.get_backends() if runtime.has_backends() else None
        runtime.set_backends(runner_backends)
        try:
            yield
        finally:
            runtime.set_backends(previous)

    # -- helpers -----------------------------------------------------------------------------
    def require(self, capability: str, backend: Any = None) -> None:
        # the base checks the kit's Capabilities; runner capabilities extend them
        names = type(self.capabilities).names()
        if capability not in names:
            raise AttributeError(f"unknown capability {capability!r}; known: {names}")
        if not getattr(self.capabilities, capability):
            pytest.skip(f"runner lacks capability {capability!r} ({capability}=False)")

    async def _activity(self) -> UUID:
        from agentexec import activity

        return await activity.acreate("runner_suite", "Waiting to start.")

    async def _logs(self, agent_id: UUID) -> list[ActivityLogSchema]:
        from agentexec import activity

        detail = await activity.adetail(agent_id)
        assert detail is not None, f"activity {agent_id} disappeared"
        return detail.logs

    # -- construction ------------------------------------------------------------------------
    async def test_constructor_defaults(self, runner_factory: Callable[..., BaseAgentRunner]) -> None:
        """``Runner(agent_id)``: a BaseAgentRunner with recovery off, 5 recovery turns and
        non-empty default prompts; the progress prompt names the ``report_status`` tool.

        Troubleshooting: subclass ``agentexec.runners.BaseAgentRunner`` and pass the constructor
        arguments through to ``super().__init__``.
        """
        agent_id = uuid.uuid4()
        runner = runner_factory(agent_id)
        assert isinstance(runner, BaseAgentRunner)
        assert runner.agent_id == agent_id
        assert runner.max_turns_recovery is False
        assert runner.recovery_turns == 5
        assert REPORT_STATUS_TOOL in runner.prompts.report_status
        assert runner.prompts.wrap_up.strip()
        assert runner.tools.report_status is not None
        assert runner_factory(str(agent_id)).agent_id == agent_id

    async def test_custom_prompts_replace_the_defaults(
        self, runner_factory: Callable[..., BaseAgentRunner]
    ) -> None:
        """``report_status_prompt`` and ``wrap_up_prompt`` replace ``prompts.report_status``
        and ``prompts.wrap_up``.

        Troubleshooting: build ``RunnerPrompts(report_status=..., wrap_up=...)`` from the
        constructor arguments (the base class does).
        """
        runner = runner_factory(
            uuid.uuid4(), report_status_prompt="Report often.", wrap_up_prompt="Stop now."
        )
        assert runner.prompts.report_status == "Report often."
        assert runner.prompts.wrap_up == "Stop now."

    # -- progress ------------------------------------------------------------------------------
    async def test_report_status_twice_then_answer(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """Two ``report_status`` calls append two RUNNING logs with their percentages, in order,
        and the run returns the model's answer.

        Troubleshooting: the tool must await ``agentexec.activity.aupdate(agent_id, message,
        percentage=..., status=Status.RUNNING)`` (``BaseAgentRunner.report_status`` does).
        """
        agent_id = await self._activity()
        runner = runner_factory(agent_id)
        script: list[ScriptStep] = [report("Reading filings", 20), report("Writing summary", 70), Answer("Acme makes anvils.")]
        outcome = await run_scripted(runner, TASK, script, max_turns=5)
        assert outcome.final_output == "Acme makes anvils."
        logs = await self._logs(agent_id)
        assert _running_logs(logs) == [("Reading filings", 20), ("Writing summary", 70)]
        assert outcome.calls[0].transcript[0] == f"user: {TASK}"

    async def test_out_of_range_percentage_is_clamped(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """A percentage above 100 or below 0 is recorded as 100 or 0, and the model is told.

        Troubleshooting: clamp before writing; the store rejects values outside 0-100.
        """
        agent_id = await self._activity()
        runner = runner_factory(agent_id)
        script: list[ScriptStep] = [report("Too far", 150), report("Too low", -5), Answer("done")]
        outcome = await run_scripted(runner, TASK, script, max_turns=5)
        assert outcome.final_output == "done"
        assert _running_logs(await self._logs(agent_id)) == [("Too far", 100), ("Too low", 0)]
        told = [line for line in outcome.calls[1].transcript if line.startswith("tool_result:")]
        assert told and "100" in told[-1], f"the model was not told of the clamp: {told}"

    async def test_activity_failure_does_not_kill_the_agent(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """When the activity write fails (here: no activity exists for the agent_id) the tool
        reports it to the model and the run still finishes.

        Troubleshooting: catch the store's exception in the tool, log it, return a message.
        """
        runner = runner_factory(uuid.uuid4())
        outcome = await run_scripted(runner, TASK, [report("Working", 50), Answer("done")], max_turns=5)
        assert outcome.final_output == "done"

    async def test_custom_report_status_prompt_reaches_the_model(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """A custom ``report_status_prompt`` is in the instructions the model receives.

        Troubleshooting: append ``runner.prompts.report_status`` to the instructions of an
        agent that has the ``report_status`` tool (``instructions_with_report_status``).
        """
        prompt = "Call report_status after every page you read. Code 7731."
        runner = runner_factory(await self._activity(), report_status_prompt=prompt)
        outcome = await run_scripted(runner, TASK, [Answer("done")], max_turns=3)
        assert prompt in (outcome.calls[0].instructions or "")

    async def test_token_usage_is_logged(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """After a run, one ``Token usage: ...`` log holds the tokens of every model call.

        Troubleshooting: sum the framework's usage and call ``record_usage(TokenUsage(...))``
        once per ``run``.
        """
        agent_id = await self._activity()
        runner = runner_factory(agent_id)
        await run_scripted(runner, TASK, [report("a", 10), report("b", 20), Answer("done")], max_turns=5)
        expected = TokenUsage(30, 15, 45, 3)
        assert _usage_logs(await self._logs(agent_id)) == [expected]

    # -- max-turns recovery -----------------------------------------------------------------
    async def test_max_turns_recovery_wraps_up_the_same_conversation(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """With recovery on, a run that exceeds ``max_turns`` continues the same conversation
        with the wrap-up prompt and returns the answer; the activity says recovery happened.

        Troubleshooting: on the framework's max-turns error, send the original input, every
        item of the failed run (tool calls and results) and then the wrap-up prompt as a user
        message; call ``record_recovery`` first.
        """
        agent_id = await self._activity()
        runner = runner_factory(
            agent_id, max_turns_recovery=True, recovery_turns=3, wrap_up_prompt="WRAP UP NOW."
        )
        script: list[ScriptStep] = [report("Step one", 10), report("Step two", 20), Answer("Partial summary.")]
        outcome = await run_scripted(runner, TASK, script, max_turns=2)
        assert outcome.final_output == "Partial summary."
        seen = outcome.calls[-1].transcript
        task = _index(seen, lambda line: line == f"user: {TASK}", "the original task")
        tool = _index(seen, lambda line: line.startswith(f"tool_call: {REPORT_STATUS_TOOL}"), "the tool history")
        results = _index(seen, lambda line: line.startswith("tool_result:"), "the tool results")
        wrap = _index(seen, lambda line: line == "user: WRAP UP NOW.", "the wrap-up prompt")
        assert task < tool < results < wrap, f"wrong order: {list(seen)}"
        logs = await self._logs(agent_id)
        assert any("recover" in log.message.lower() for log in logs), [log.message for log in logs]
        assert _usage_logs(logs) == [TokenUsage(30, 15, 45, 3)]

    async def test_without_recovery_max_turns_error_propagates(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """With recovery off the framework's max-turns error reaches the caller (so the task ends
        ERROR), nothing says it recovered, and the tokens spent are still logged.

        Troubleshooting: re-raise the error; list its class in ``max_turns_exceptions``.
        """
        agent_id = await self._activity()
        runner = runner_factory(agent_id)
        assert runner.max_turns_exceptions, "declare max_turns_exceptions on the runner class"
        with pytest.raises(runner.max_turns_exceptions):
            await run_scripted(runner, TASK, [report("a", 10), report("b", 20)], max_turns=2)
        logs = await self._logs(agent_id)
        assert not any("recover" in log.message.lower() for log in logs)
        assert _usage_logs(logs) == [TokenUsage(20, 10, 30, 2)]

    async def test_exhausted_recovery_propagates_the_error(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """A model that keeps calling tools through recovery gets at most ``recovery_turns``
        more calls, then the max-turns error propagates.

        Troubleshooting: bound the recovery run by ``recovery_turns``; raise the framework's
        max-turns error when it, too, runs out (the script has exactly max_turns +
        recovery_turns steps, so one call more fails differently).
        """
        agent_id = await self._activity()
        runner = runner_factory(agent_id, max_turns_recovery=True, recovery_turns=2)
        script: list[ScriptStep] = [report(f"step {i}", 10 * i) for i in range(4)]
        with pytest.raises(runner.max_turns_exceptions):
            await run_scripted(runner, TASK, script, max_turns=2)
        logs = await self._logs(agent_id)
        assert any("recover" in log.message.lower() for log in logs)

    # -- streaming ---------------------------------------------------------------------------
    async def test_streamed_run_records_progress(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """``run_streamed`` records ``report_status`` calls and token usage like ``run``.

        Troubleshooting: the streamed path must use the same tool and bookkeeping; log usage
        when the stream ends. Declare ``RunnerCapabilities(streaming=False)`` if unsupported.
        """
        self.require("streaming")
        agent_id = await self._activity()
        runner = runner_factory(agent_id)
        script: list[ScriptStep] = [report("Streaming", 40), Answer("streamed answer")]
        outcome = await run_scripted(runner, TASK, script, max_turns=5, streamed=True)
        assert outcome.final_output == "streamed answer"
        logs = await self._logs(agent_id)
        assert _running_logs(logs) == [("Streaming", 40)]
        assert _usage_logs(logs) == [TokenUsage(20, 10, 30, 2)]

    async def test_streamed_run_recovers(
        self, runner_factory: Callable[..., BaseAgentRunner], run_scripted: RunScripted
    ) -> None:
        """Max-turns recovery works in a streamed run too.

        Troubleshooting: catch the max-turns error raised while streaming and stream the
        recovery run in its place.
        """
        self.require("streaming")
        agent_id = await self._activity()
        runner = runner_factory(agent_id, max_turns_recovery=True, wrap_up_prompt="WRAP UP NOW.")
        script: list[ScriptStep] = [report("one", 10), Answer("wrapped")]
        outcome = await run_scripted(runner, TASK, script, max_turns=1, streamed=True)
        assert outcome.final_output == "wrapped"
        assert outcome.calls[-1].transcript[-1] == "user: WRAP UP NOW."


__all__ = [
    "TASK",
    "USAGE_PER_CALL",
    "Answer",
    "RunScripted",
    "RunnerCapabilities",
    "RunnerSuite",
    "ScriptStep",
    "ScriptedOutcome",
    "SeenCall",
    "ToolCall",
    "report",
]
