"""``ax.OpenAIRunner``: run an OpenAI Agents SDK agent for one agentexec task.

Example, inside a task handler::

    @pool.task("research")
    async def research(agent_id: UUID, context: Research) -> str:
        runner = ax.OpenAIRunner(agent_id, max_turns_recovery=True)
        agent = Agent(
            name="Researcher",
            instructions=f"Research companies.\\n\\n{runner.prompts.report_status}",
            tools=[runner.tools.report_status, web_search],
            model="gpt-4.1",
        )
        result = await runner.run(agent, f"Research {context.company}", max_turns=15)
        return str(result.final_output)

Everything ``Runner.run`` accepts besides ``max_turns`` and ``context`` (``run_config``,
``hooks``, ``session``, ``previous_response_id`` ...) passes through as keyword arguments, and
``OpenAIRunner(..., run_config=...)`` sets a default ``RunConfig`` for every run. That is also
how tests swap in a scripted model, with no change to the code under test::

    runner = ax.OpenAIRunner(agent_id, run_config=RunConfig(model_provider=provider))
    # or: await runner.run(agent, "task", run_config=RunConfig(model_provider=provider))
"""

from __future__ import annotations

import inspect
from typing import Any
from uuid import UUID

from agentexec import telemetry
from agentexec.runners import REPORT_STATUS_TOOL, BaseAgentRunner
from agents import Agent, MaxTurnsExceeded, RunConfig, RunContextWrapper, Runner
from agents.items import TResponseInputItem
from agents.result import RunResult

from agentexec_openai.call import RunCall
from agentexec_openai.conversation import Attempt, usage_of, usage_of_error
from agentexec_openai.observed import run_attributes
from agentexec_openai.streaming import StreamedRun
from agentexec_openai.tools import OpenAIRunnerTools


class OpenAIRunner(BaseAgentRunner):
    """Runs Agents SDK agents for one task, recording progress, recovery and token usage.

    Args:
        agent_id: the task's id (the handler's ``agent_id``); its activity gets the logs.
        max_turns_recovery: when a run raises ``MaxTurnsExceeded``, continue the conversation
            with ``prompts.wrap_up`` for at most ``recovery_turns`` more turns, the last one
            forced to answer (``tool_choice="none"``), instead of failing.
        wrap_up_prompt: replaces the default wrap-up prompt.
        recovery_turns: turns allowed for the wrap-up (at least 1).
        report_status_prompt: replaces the default ``prompts.report_status``.
        run_config: a default ``RunConfig`` for every run (a ``run_config=`` given to ``run``
            wins).

    An agent that has ``runner.tools.report_status`` gets ``prompts.report_status`` appended
    to its instructions unless they already contain it (pass ``report_status_prompt=""`` to
    opt out). Without recovery, or when recovery runs out too, ``MaxTurnsExceeded`` propagates
    and the task ends ERROR with its message.
    """

    tools_class = OpenAIRunnerTools
    max_turns_exceptions = (MaxTurnsExceeded,)
    tools: OpenAIRunnerTools

    def __init__(
        self,
        agent_id: UUID | str,
        max_turns_recovery: bool = False,
        wrap_up_prompt: str | None = None,
        recovery_turns: int = 5,
        report_status_prompt: str | None = None,
        *,
        run_config: RunConfig | None = None,
    ) -> None:
        super().__init__(
            agent_id,
            max_turns_recovery=max_turns_recovery,
            wrap_up_prompt=wrap_up_prompt,
            recovery_turns=recovery_turns,
            report_status_prompt=report_status_prompt,
        )
        self.run_config = run_config

    async def run(
        self,
        agent: Agent[Any],
        input: str | list[TResponseInputItem],
        max_turns: int = 10,
        context: Any = None,
        **options: Any,
    ) -> RunResult:
        """``Runner.run`` with progress, recovery and token usage recorded on the activity.

        ``options`` are passed to ``Runner.run`` as they are. After recovery the result is the
        recovery run's: its ``final_output`` answers the task, and ``to_input_list()`` holds the
        whole conversation.
        """
        call = self._call(agent, input, max_turns, context, options)
        attempt = call.first
        try:
            while True:
                try:
                    if telemetry.on():
                        result = await self._observed(call, attempt)
                    else:
                        result = await Runner.run(attempt.agent, attempt.input, **call.kwargs(attempt))
                except MaxTurnsExceeded as error:
                    call.add_usage(usage_of_error(error))
                    attempt = await call.after_max_turns(error)
                    continue
                except Exception as error:
                    call.add_usage(usage_of_error(error))
                    raise
                call.add_usage(usage_of(result))
                break
        except Exception:
            await call.finish()
            raise
        await call.finish()
        return result

    async def _observed(self, call: RunCall, attempt: Attempt) -> RunResult:
        """One SDK run inside its ``invoke_agent`` span (see :mod:`agentexec_openai.observed`)."""
        attributes = run_attributes(attempt.agent, call.options)
        attributes["agentexec.agent_id"] = str(self.agent_id)
        attributes["agentexec.recovery"] = attempt is not call.first
        with telemetry.span(f"invoke_agent {attempt.agent.name}", telemetry.INTERNAL, attributes) as spans:
            result = await Runner.run(attempt.agent, attempt.input, **call.kwargs(attempt))
            usage = usage_of(result)
            spans.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            spans.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            return result

    def run_streamed(
        self,
        agent: Agent[Any],
        input: str | list[TResponseInputItem],
        max_turns: int = 10,
        context: Any = None,
        **options: Any,
    ) -> StreamedRun:
        """``Runner.run_streamed`` with the same bookkeeping as :meth:`run`.

        The run starts at once; iterate ``stream_events()`` on the returned
        :class:`~agentexec_openai.streaming.StreamedRun`, or ``await`` it to consume it.
        """
        return StreamedRun(self._call(agent, input, max_turns, context, options))

    def prepare_agent(self, agent: Agent[Any]) -> Agent[Any]:
        """The agent as the runner runs it: with ``prompts.report_status`` in its instructions
        when it has the ``report_status`` tool (a clone; the caller's agent is not changed)."""
        if not any(getattr(tool, "name", None) == REPORT_STATUS_TOOL for tool in agent.tools):
            return agent
        instructions = agent.instructions
        if instructions is None or isinstance(instructions, str):
            updated = self.instructions_with_report_status(instructions)
            return agent if updated == instructions else agent.clone(instructions=updated)
        if not self.prompts.report_status:
            return agent
        dynamic = instructions

        async def with_report_status(ctx: RunContextWrapper[Any], current: Agent[Any]) -> str:
            value = dynamic(ctx, current)
            text = await value if inspect.isawaitable(value) else value
            return self.instructions_with_report_status(text) or ""

        return agent.clone(instructions=with_report_status)

    def _call(
        self,
        agent: Agent[Any],
        input: str | list[TResponseInputItem],
        max_turns: int,
        context: Any,
        options: dict[str, Any],
    ) -> RunCall:
        if self.run_config is not None:
            options = {"run_config": self.run_config, **options}
        first = Attempt(self.prepare_agent(agent), input, max_turns)
        return RunCall(self, first, context, options)
