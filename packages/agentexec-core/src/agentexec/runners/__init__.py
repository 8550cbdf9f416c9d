"""``ax.BaseAgentRunner``: what every agent runner shares, whatever the agent framework.

A runner runs one agent for one task (``agent_id``) and keeps that task's activity informed:

- ``runner.prompts.report_status`` tells the model how and when to report progress, and
  ``runner.tools.report_status`` is the tool it reports with, named ``report_activity`` as the
  original agentexec names it (so prompts written for it keep working): each call appends a
  RUNNING log (message, percentage) to the task's activity.
- When the framework stops a run for using too many turns and ``max_turns_recovery`` is on, the
  runner continues the same conversation with ``runner.prompts.wrap_up`` for at most
  ``recovery_turns`` more turns, the last of them forced to answer, and logs that it did so.
- After each run the tokens it used are logged (see :class:`TokenUsage`).

A framework adapter subclasses this, wraps :meth:`BaseAgentRunner.report_status` in its own tool
type (override :attr:`BaseAgentRunner.tools_class`), and calls :meth:`record_recovery` and
:meth:`record_usage` from its ``run``. Bookkeeping never fails a run: an activity write that
fails is logged and the agent carries on. ``agentexec.testing.RunnerSuite`` checks all of this
for any runner. This module imports no agent framework.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

from agentexec import telemetry
from agentexec.activity.status import Status
from agentexec.backends import as_uuid

log = logging.getLogger("agentexec.runners")

#: the name the model sees for the progress tool (the original agentexec's); prompts refer to
#: it, so adapters must keep it
REPORT_STATUS_TOOL = "report_activity"
REPORT_ACTIVITY_TOOL = REPORT_STATUS_TOOL

DEFAULT_REPORT_STATUS_PROMPT = (
    f"Report your progress with the {REPORT_STATUS_TOOL} tool:\n"
    f"- Call {REPORT_STATUS_TOOL}(message, percentage) before you start each new step, in the "
    "same turn as that step's other tool calls, so reporting never costs a turn of its own.\n"
    "- message: what you are doing now, for the user, in 10 words or fewer; no internal "
    "details.\n"
    "- percentage: your estimate of how much of the whole task is done, an integer from 0 to "
    "100.\n"
    "- The user cannot see your work in any other way."
)

DEFAULT_WRAP_UP_PROMPT = (
    "You have used up the turns available for this task. Stop calling tools and give your "
    "final answer now, using what you have found so far; say what is missing or uncertain."
)


class RunnerPrompts:
    """``runner.prompts``: the instructions a runner hands to its agent.

    ``report_status`` goes into the agent's instructions; ``wrap_up`` is sent as a user message
    when max-turns recovery starts. Both can be replaced through the runner's constructor.
    """

    def __init__(
        self, *, report_status: str | None = None, wrap_up: str | None = None
    ) -> None:
        self.report_status = (
            DEFAULT_REPORT_STATUS_PROMPT if report_status is None else report_status
        )
        self.wrap_up = DEFAULT_WRAP_UP_PROMPT if wrap_up is None else wrap_up

    def __repr__(self) -> str:
        return f"RunnerPrompts(report_status={self.report_status!r}, wrap_up={self.wrap_up!r})"


class RunnerTools:
    """``runner.tools``: the tools a runner hands to its agent.

    This framework-neutral version gives plain async functions; an adapter subclass wraps them
    in its framework's tool type (and should build each tool once, so the same object is
    returned on every access).
    """

    def __init__(self, runner: BaseAgentRunner) -> None:
        self._runner = runner

    @property
    def report_status(self) -> Any:
        """An async ``(message: str, percentage: int) -> str`` recording progress."""
        runner = self._runner

        async def report_activity(message: str, percentage: int) -> str:
            """Report your progress on the task to the user.

            Args:
                message: What you are doing now, in 10 words or fewer.
                percentage: How much of the whole task is done, from 0 to 100.
            """
            return await runner.report_status(message, percentage)

        return report_activity


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens one run used, and what they cost. Logged on the activity as one structured line,
    ``Token usage: input=.. output=.. total=.. requests=..`` followed, when known, by
    `` cached=.. reasoning=..``, `` model=..`` and `` cost=..`` (US dollars, from
    :mod:`agentexec.pricing`); :meth:`parse` reads it back, and ``ax.activity.detail(...).usage``
    sums the lines of one task (its recovery runs, its pipeline steps)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0
    #: input tokens served from the provider's prompt cache (part of ``input_tokens``)
    cached_tokens: int = 0
    #: reasoning tokens (part of ``output_tokens``)
    reasoning_tokens: int = 0
    #: the model the tokens went to (``"mixed"`` in a sum over several); not compared: two
    #: usages are equal when their token counts are
    model: str | None = dataclasses.field(default=None, compare=False)
    #: US dollars; ``None`` when no price is known for the model; not compared either
    cost: float | None = dataclasses.field(default=None, compare=False)

    PREFIX: ClassVar[str] = "Token usage:"
    _PATTERN: ClassVar[re.Pattern[str]] = re.compile(
        r"^Token usage: input=(\d+) output=(\d+) total=(\d+) requests=(\d+)"
        r"(?: cached=(\d+) reasoning=(\d+))?(?: model=(\S+))?(?: cost=(\d+(?:\.\d+)?))?$"
    )

    def __add__(self, other: TokenUsage) -> TokenUsage:
        models = {m for m in (self.model, other.model) if m}
        costs = [c for c in (self.cost, other.cost) if c is not None]
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.total_tokens + other.total_tokens,
            self.requests + other.requests,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            models.pop() if len(models) == 1 else ("mixed" if models else None),
            round(sum(costs), 9) if costs else None,
        )

    def priced(self, model: str | None) -> TokenUsage:
        """This usage of ``model``, with its cost from the price table (:mod:`agentexec.pricing`)."""
        from agentexec.pricing import cost_of

        cost = cost_of(model, self.input_tokens, self.output_tokens, self.cached_tokens)
        return dataclasses.replace(self, model=model, cost=None if cost is None else round(cost, 9))

    def message(self) -> str:
        """The activity log line; :meth:`parse` reads it back."""
        line = (
            f"{self.PREFIX} input={self.input_tokens} output={self.output_tokens} "
            f"total={self.total_tokens} requests={self.requests}"
        )
        if self.cached_tokens or self.reasoning_tokens:
            line += f" cached={self.cached_tokens} reasoning={self.reasoning_tokens}"
        if self.model and not any(c.isspace() for c in self.model):
            line += f" model={self.model}"
        if self.cost is not None:
            line += f" cost={self.cost:.9f}".rstrip("0").rstrip(".")
        return line

    @classmethod
    def parse(cls, message: str) -> TokenUsage | None:
        """The usage a log line records, or ``None`` for any other line."""
        match = cls._PATTERN.match(message)
        if match is None:
            return None
        inp, out, total, requests, cached, reasoning, model, cost = match.groups()
        return cls(
            int(inp), int(out), int(total), int(requests), int(cached or 0), int(reasoning or 0),
            model, None if cost is None else float(cost),
        )

    @classmethod
    def total(cls, messages: Iterable[str]) -> TokenUsage | None:
        """The sum of the usage lines among ``messages``; ``None`` when there is none."""
        found: TokenUsage | None = None
        for message in messages:
            if message.startswith(cls.PREFIX):
                usage = cls.parse(message)
                if usage is not None:
                    found = usage if found is None else found + usage
        return found


def _as_uuid(agent_id: UUID | str) -> UUID:
    try:
        return as_uuid(agent_id)
    except ValueError:
        raise ValueError(
            f"agent_id must be the task's UUID (the handler's agent_id argument), got {agent_id!r}"
        ) from None


class BaseAgentRunner:
    """Base class of agent runners (``ax.OpenAIRunner`` and ``ax.PydanticAIRunner`` extend it).

    Args:
        agent_id: the task's id; progress, recovery and token usage are logged on its activity.
        max_turns_recovery: when the run exceeds its turns, continue with the wrap-up prompt
            instead of failing.
        wrap_up_prompt: replaces the default ``prompts.wrap_up``.
        recovery_turns: at most this many more turns for the wrap-up (the last one is forced to
            answer where the framework can force it).
        report_status_prompt: replaces the default ``prompts.report_status`` (``""`` leaves the
            agent's instructions untouched).
    """

    #: the ``runner.tools`` namespace class; adapters return their framework's tool objects
    tools_class: ClassVar[type[RunnerTools]] = RunnerTools
    #: the exceptions the framework raises when a run exceeds its turns
    max_turns_exceptions: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(
        self,
        agent_id: UUID | str,
        max_turns_recovery: bool = False,
        wrap_up_prompt: str | None = None,
        recovery_turns: int = 5,
        report_status_prompt: str | None = None,
    ) -> None:
        if isinstance(recovery_turns, bool) or not isinstance(recovery_turns, int):
            raise TypeError(f"recovery_turns must be an int, got {recovery_turns!r}")
        if recovery_turns < 1:
            raise ValueError(
                f"recovery_turns must be at least 1 (the wrap-up needs a turn), got {recovery_turns}"
            )
        self.agent_id: UUID = _as_uuid(agent_id)
        self.max_turns_recovery = bool(max_turns_recovery)
        self.recovery_turns = recovery_turns
        self.prompts = RunnerPrompts(report_status=report_status_prompt, wrap_up=wrap_up_prompt)
        self.tools = self.tools_class(self)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(agent_id={str(self.agent_id)!r}, "
            f"max_turns_recovery={self.max_turns_recovery}, recovery_turns={self.recovery_turns})"
        )

    # -- what the progress tool does ------------------------------------------------------
    async def report_status(self, message: str, percentage: int) -> str:
        """Append a RUNNING log for this runner's task; returns the text the model sees.

        A percentage outside 0-100 is clamped (and the model is told); a failed activity write
        is logged and reported to the model, never raised, so bookkeeping cannot kill an agent.
        """
        note = ""
        if isinstance(percentage, bool) or not isinstance(percentage, int):
            try:
                percentage = int(percentage)
            except (TypeError, ValueError):
                return (
                    f"Not recorded: percentage must be an integer from 0 to 100, got "
                    f"{percentage!r}. Call {REPORT_STATUS_TOOL} again with a number."
                )
        if not 0 <= percentage <= 100:
            clamped = min(100, max(0, percentage))
            note = f" (percentage {percentage} is outside 0-100; recorded as {clamped})"
            percentage = clamped
        if not await self._append(str(message), percentage, Status.RUNNING):
            return "Progress could not be recorded right now; carry on with the task."
        return f"Progress recorded{note}."

    # -- policy hooks for adapters ----------------------------------------------------------
    def should_recover(self, error: BaseException) -> bool:
        """Whether ``error`` (raised by the framework's run) starts max-turns recovery."""
        return self.max_turns_recovery and isinstance(error, self.max_turns_exceptions)

    def instructions_with_report_status(self, instructions: str | None) -> str | None:
        """The agent's instructions with ``prompts.report_status`` appended, once.

        Adapters call this for an agent that has the progress tool, so a custom
        ``report_status_prompt`` reaches the model even when the user's instructions do not
        include it.
        """
        prompt = self.prompts.report_status
        if not prompt or (instructions is not None and prompt in instructions):
            return instructions
        return prompt if not instructions else f"{instructions}\n\n{prompt}"

    def recovery_exhausted_message(self, max_turns: int | None) -> str:
        """The error message when recovery, too, ran out of turns."""
        return (
            f"Max turns ({max_turns}) exceeded, and max-turns recovery did not get a final answer "
            f"within {self.recovery_turns} more turns; raise max_turns or recovery_turns, or make "
            f"the wrap-up prompt firmer"
        )

    async def record_recovery(self, max_turns: int | None) -> None:
        """Log on the activity that the run hit its turn limit and recovery started."""
        await self._append(
            f"Max turns ({max_turns}) reached; recovering: asking the agent to wrap up "
            f"within {self.recovery_turns} more turns.",
            None,
            None,
        )

    async def record_usage(self, usage: TokenUsage) -> None:
        """Log the tokens a run used (see :meth:`TokenUsage.message`), and count them for the
        instruments (``tokens`` by model and kind, ``cost`` by model)."""
        await self._append(usage.message(), None, None)
        if telemetry.on():
            model = usage.model or "unknown"
            for kind, tokens in (
                ("input", usage.input_tokens), ("output", usage.output_tokens),
                ("cached", usage.cached_tokens), ("reasoning", usage.reasoning_tokens),
            ):
                if tokens:
                    telemetry.count("tokens", {"model": model, "kind": kind}, tokens)
            if usage.cost:
                telemetry.observe("cost", usage.cost, {"model": model})

    # -- the one place runners write activity -------------------------------------------------
    async def _append(self, message: str, percentage: int | None, status: Status | None) -> bool:
        from agentexec import activity

        try:
            await activity.aupdate(self.agent_id, message, percentage=percentage, status=status)
        except Exception:
            log.warning(
                "agentexec: could not record %r on the activity of %s; the agent continues",
                message, self.agent_id, exc_info=True,
            )
            return False
        return True


#: what ``RunnerTools.report_status`` returns, for adapters that wrap it
ReportStatusFunction = Callable[[str, int], Awaitable[str]]

__all__ = [
    "DEFAULT_REPORT_STATUS_PROMPT",
    "DEFAULT_WRAP_UP_PROMPT",
    "REPORT_ACTIVITY_TOOL",
    "REPORT_STATUS_TOOL",
    "BaseAgentRunner",
    "ReportStatusFunction",
    "RunnerPrompts",
    "RunnerTools",
    "TokenUsage",
]
