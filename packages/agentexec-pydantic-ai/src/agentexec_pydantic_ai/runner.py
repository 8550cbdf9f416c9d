"""``ax.PydanticAIRunner``: run a pydantic-ai agent for one agentexec task.

Example, inside a task handler::

    @pool.task("research")
    async def research(agent_id: UUID, context: Research) -> str:
        runner = ax.PydanticAIRunner(agent_id, max_turns_recovery=True)
        agent = Agent(
            "openai:gpt-4.1",
            instructions="Research companies.",
            tools=[runner.tools.report_status, web_search],
        )
        result = await runner.run(agent, f"Research {context.company}", max_turns=15)
        return result.output

Everything ``Agent.run`` accepts besides ``usage_limits`` and ``usage`` (``deps``,
``output_type``, ``message_history``, ``model_settings``, ``event_stream_handler``,
``cancellation_token``, ``timeout`` ...) passes through as keyword arguments, and
``PydanticAIRunner(..., model=...)`` sets a default ``model=`` for every run (a ``model=`` given
to ``run`` wins). That is also how tests swap in an offline model with no change to the agent::

    runner = ax.PydanticAIRunner(agent_id, model=ScriptedModel([...]))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from agentexec.runners import REPORT_STATUS_TOOL, BaseAgentRunner
from pydantic_ai.agent import AbstractAgent, AgentRunResult
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.models import Model
from pydantic_ai.usage import UsageLimits

from agentexec_pydantic_ai.call import RunCall, UserPrompt
from agentexec_pydantic_ai.streaming import StreamedRun
from agentexec_pydantic_ai.tools import PydanticAIRunnerTools


class PydanticAIRunner(BaseAgentRunner):
    """Runs pydantic-ai agents for one task, recording progress, recovery and token usage.

    Args:
        agent_id: the task's id (the handler's ``agent_id``); its activity gets the logs.
        max_turns_recovery: when a run uses up its ``max_turns`` model requests
            (``UsageLimitExceeded``), continue the conversation with ``prompts.wrap_up`` for at
            most ``recovery_turns`` more requests, the last one forced to answer
            (``tool_choice="none"``), instead of failing.
        wrap_up_prompt: replaces the default wrap-up prompt.
        recovery_turns: requests allowed for the wrap-up (at least 1).
        report_status_prompt: replaces the default ``prompts.report_status``.
        model: a default ``model=`` for every run (a model object or a name such as
            ``"openai:gpt-4.1"``); a ``model=`` given to ``run`` wins.

    An agent that has ``runner.tools.report_status`` gets ``prompts.report_status`` added to the
    run's instructions unless the agent's own instructions already contain it (pass
    ``report_status_prompt=""`` to opt out). Without recovery, or when recovery runs out too,
    ``UsageLimitExceeded`` propagates and the task ends ERROR with its message.
    """

    tools_class = PydanticAIRunnerTools
    max_turns_exceptions = (UsageLimitExceeded,)
    tools: PydanticAIRunnerTools

    def __init__(
        self,
        agent_id: UUID | str,
        max_turns_recovery: bool = False,
        wrap_up_prompt: str | None = None,
        recovery_turns: int = 5,
        report_status_prompt: str | None = None,
        *,
        model: Model | str | None = None,
    ) -> None:
        super().__init__(
            agent_id,
            max_turns_recovery=max_turns_recovery,
            wrap_up_prompt=wrap_up_prompt,
            recovery_turns=recovery_turns,
            report_status_prompt=report_status_prompt,
        )
        self.model = model

    async def run(
        self,
        agent: AbstractAgent[Any, Any],
        user_prompt: UserPrompt = None,
        *,
        max_turns: int | None = 10,
        usage_limits: UsageLimits | None = None,
        **options: Any,
    ) -> AgentRunResult[Any]:
        """``agent.run`` with progress, recovery and token usage recorded on the activity.

        ``max_turns`` is the number of model requests the run may make (the ``request_limit``
        of ``usage_limits``, whose other limits apply as given); ``None`` keeps the request
        limit of ``usage_limits`` (pydantic-ai's default: 50). ``options`` are passed to
        ``Agent.run`` as they are. After recovery the result is the recovery run's: its
        ``output`` answers the task, and ``all_messages()`` holds the whole conversation.
        """
        call = self._call(agent, user_prompt, max_turns, usage_limits, options)
        return await call.execute()

    def run_stream_events(
        self,
        agent: AbstractAgent[Any, Any],
        user_prompt: UserPrompt = None,
        *,
        max_turns: int | None = 10,
        usage_limits: UsageLimits | None = None,
        **options: Any,
    ) -> StreamedRun:
        """:meth:`run`, streamed: every event of the run (model response parts, tool calls and
        their results, recovery runs included), then one ``AgentRunResultEvent``::

            async with runner.run_stream_events(agent, "Research Acme") as stream:
                async for event in stream:
                    ...
            print(stream.result.output)

        The run starts when the ``async with`` block is entered, and ``report_status`` records
        progress while it streams. Leaving the block before the stream ends cancels the run.
        """
        if options.pop("event_stream_handler", None) is not None:
            raise TypeError(
                "run_stream_events hands the run's events to its own stream; pass "
                "event_stream_handler= to run() instead"
            )
        return StreamedRun(self._call(agent, user_prompt, max_turns, usage_limits, options))

    # -- instructions ------------------------------------------------------------------------
    def run_instructions(
        self, agent: AbstractAgent[Any, Any], instructions: Any = None, toolsets: Any = None
    ) -> Any:
        """The ``instructions=`` a run of ``agent`` gets: the run's own ``instructions`` plus
        ``prompts.report_status`` when the agent (or the run's ``toolsets``) has the
        ``report_status`` tool and neither already says it."""
        if not _has_report_status(agent, toolsets):
            return instructions
        known = "\n\n".join([*_static_instructions(agent), *_texts(instructions)]) or None
        if self.instructions_with_report_status(known) == known:
            return instructions
        prompt = self.prompts.report_status
        if instructions is None:
            return prompt
        if isinstance(instructions, str) or callable(instructions):
            return [instructions, prompt]
        return [*instructions, prompt]

    def _call(
        self,
        agent: AbstractAgent[Any, Any],
        user_prompt: UserPrompt,
        max_turns: int | None,
        usage_limits: UsageLimits | None,
        options: dict[str, Any],
    ) -> RunCall:
        if max_turns is not None and (isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1):
            raise ValueError(f"max_turns must be a positive int or None, got {max_turns!r}")
        if self.model is not None:
            options.setdefault("model", self.model)
        options["instructions"] = self.run_instructions(
            agent, options.get("instructions"), options.get("toolsets")
        )
        return RunCall(self, agent, user_prompt, max_turns, usage_limits, options)


def _texts(instructions: Any) -> list[str]:
    if instructions is None:
        return []
    if isinstance(instructions, str):
        return [instructions]
    if callable(instructions):
        return []
    return [item for item in instructions if isinstance(item, str)]


def _static_instructions(agent: Any) -> list[str]:
    """The agent's fixed instruction and system-prompt strings (best effort: pydantic-ai keeps
    them privately; an agent whose layout is unknown reports none, and then the prompt is added
    even if the agent's instructions already hold it)."""
    found: list[str] = []
    for item in [*getattr(agent, "_instructions", ()), *getattr(agent, "_system_prompts", ())]:
        text = getattr(item, "instruction", item)
        if isinstance(text, str):
            found.append(text)
    return found


def _tool_names(toolset: Any, depth: int = 0) -> Iterable[str]:
    if depth > 4:
        return
    tools = getattr(toolset, "tools", None)
    if isinstance(tools, dict):
        yield from (str(name) for name in tools)
    wrapped = getattr(toolset, "wrapped", None)
    if wrapped is not None:
        yield from _tool_names(wrapped, depth + 1)
    for inner in getattr(toolset, "toolsets", None) or ():
        yield from _tool_names(inner, depth + 1)


def _has_report_status(agent: AbstractAgent[Any, Any], toolsets: Sequence[Any] | None) -> bool:
    try:
        agent_toolsets = list(agent.toolsets)
    except Exception:
        agent_toolsets = []
    return any(
        name == REPORT_STATUS_TOOL
        for toolset in [*agent_toolsets, *(toolsets or ())]
        for name in _tool_names(toolset)
    )
