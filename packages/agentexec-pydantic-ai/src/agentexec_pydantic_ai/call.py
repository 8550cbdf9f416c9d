"""One ``runner.run`` / ``runner.run_stream_events`` call: its pydantic-ai runs, its recovery,
its token count.

Shared by the awaited and the streamed paths, so both recover and count tokens the same way.

Turns are model requests: ``max_turns`` becomes the ``request_limit`` of the run's
``UsageLimits``, counted from the requests the call's ``RunUsage`` held when the run started.
When a run stops with ``UsageLimitExceeded`` *because it used its turns* (token, cost and tool-call
limits are budgets and always propagate) and recovery is on, the same conversation continues:
the messages the run got to (captured with ``capture_run_messages``; every tool call in them has
run) are sent again with the wrap-up prompt as a new user prompt. Of the ``recovery_turns``
turns, all but the last keep tools usable; the last runs with ``tool_choice="none"``, which makes
the model answer (in text, or through an output tool when the agent has a structured
``output_type``). The tools stay registered because the history refers to them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
from agentexec.runners import TokenUsage
from pydantic_ai import capture_run_messages
from pydantic_ai.agent import AbstractAgent, AgentRunResult
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, UserContent
from pydantic_ai.usage import RunUsage, UsageLimits

if TYPE_CHECKING:
    from agentexec_pydantic_ai.runner import PydanticAIRunner

log = logging.getLogger("agentexec_pydantic_ai")

#: how long a cancelled run may spend logging the tokens it used (the write is shielded)
CANCELLED_USAGE_WRITE_TIMEOUT = 2.0

UserPrompt = str | Sequence[UserContent] | None


@dataclass(frozen=True)
class Attempt:
    """One ``Agent.run`` of a call."""

    user_prompt: UserPrompt
    #: the conversation to continue; ``None`` keeps the caller's own ``message_history``
    history: list[ModelMessage] | None
    #: model requests this run may make (``None``: no request limit)
    turns: int | None
    #: the model must answer: ``tool_choice="none"``
    forced: bool = False


class RecoveryPlan:
    """The recovery runs after the turn limit: ``next(history)`` gives each in turn."""

    def __init__(self, wrap_up_prompt: str, recovery_turns: int) -> None:
        self._wrap_up = wrap_up_prompt
        self._free_turns = recovery_turns - 1
        self._stage: Literal["new", "free", "forced"] = "new"

    def next(self, history: list[ModelMessage]) -> Attempt | None:
        """The next run, continuing ``history`` (what the failed run got to), or ``None`` once the
        forced final turn has been spent."""
        if self._stage == "forced":
            return None
        if self._stage == "new":
            if self._free_turns > 0:
                self._stage = "free"
                return Attempt(self._wrap_up, history, self._free_turns)
            self._stage = "forced"
            return Attempt(self._wrap_up, history, 1, forced=True)
        # after the free turns the wrap-up prompt is already in the history
        self._stage = "forced"
        return Attempt(None, history, 1, forced=True)


def force_answer(model_settings: Any) -> Any:
    """``model_settings`` with ``tool_choice="none"`` (a callable's result is changed the same way)."""
    if callable(model_settings):
        dynamic = model_settings

        def forced(ctx: Any) -> Any:
            return {**(dynamic(ctx) or {}), "tool_choice": "none"}

        return forced
    return {**(model_settings or {}), "tool_choice": "none"}


class RunCall:
    """State of one call: the agent, the first attempt, the recovery plan once needed, and the
    ``RunUsage`` every run of the call adds to (the caller's ``usage=`` if given)."""

    def __init__(
        self,
        runner: PydanticAIRunner,
        agent: AbstractAgent[Any, Any],
        user_prompt: UserPrompt,
        max_turns: int | None,
        usage_limits: UsageLimits | None,
        options: dict[str, Any],
    ) -> None:
        self.runner = runner
        self.agent = agent
        self.max_turns = max_turns
        usage = options.pop("usage", None)
        self.usage: RunUsage = usage if usage is not None else RunUsage()
        self._start = self._counts()
        self.limits = usage_limits if usage_limits is not None else UsageLimits()
        turns = max_turns if max_turns is not None else self.limits.request_limit
        self.first = Attempt(user_prompt, None, turns)
        self.options = options
        self._plan: RecoveryPlan | None = None
        self._request_limit: int | None = None

    def _counts(self) -> tuple[int, int, int, int, int]:
        usage = self.usage
        return (
            usage.input_tokens, usage.output_tokens, usage.requests,
            # read with defaults: older pydantic-ai releases lack them
            int(getattr(usage, "cache_read_tokens", 0) or 0),
            int(getattr(usage, "output_reasoning_tokens", 0) or 0),
        )

    def model_name(self) -> str | None:
        """The model the call's runs go to (``openai:gpt-4.1`` → ``gpt-4.1``), if known."""
        model = self.options.get("model") or getattr(self.agent, "model", None)
        name = model if isinstance(model, str) else getattr(model, "model_name", None)
        if not isinstance(name, str) or not name:
            return None
        return name.split(":", 1)[1] if ":" in name else name

    def kwargs(self, attempt: Attempt) -> dict[str, Any]:
        """Keyword arguments of ``Agent.run`` for ``attempt`` (besides the user prompt)."""
        kwargs = dict(self.options)
        self._request_limit = None if attempt.turns is None else self.usage.requests + attempt.turns
        kwargs["usage"] = self.usage
        kwargs["usage_limits"] = dataclasses.replace(self.limits, request_limit=self._request_limit)
        if attempt.history is not None:
            kwargs.pop("conversation", None)
            kwargs["message_history"] = attempt.history
        if attempt.forced:
            kwargs["model_settings"] = force_answer(kwargs.get("model_settings"))
        return kwargs

    def token_usage(self) -> TokenUsage:
        """The tokens every run of this call used so far."""
        start_in, start_out, start_requests, start_cached, start_reasoning = self._start
        inp, out, requests, cached, reasoning = self._counts()
        inp, out = inp - start_in, out - start_out
        return TokenUsage(
            inp, out, inp + out, requests - start_requests, cached - start_cached,
            reasoning - start_reasoning,
        )

    def _used_its_turns(self) -> bool:
        return self._request_limit is not None and self.usage.requests >= self._request_limit

    async def after_limit(self, error: UsageLimitExceeded, history: list[ModelMessage]) -> Attempt:
        """The recovery run to start after ``error``; raises when there is none."""
        runner = self.runner
        if not runner.should_recover(error) or not self._used_its_turns():
            raise error
        if not history:
            log.warning("agentexec: the run that hit its turn limit left no messages; cannot recover")
            raise error
        if self._plan is None:
            self._plan = RecoveryPlan(runner.prompts.wrap_up, runner.recovery_turns)
            await runner.record_recovery(self.max_turns if self.max_turns is not None else self.first.turns)
        attempt = self._plan.next(history)
        if attempt is None:
            raise exhausted(runner.recovery_exhausted_message(self.max_turns or self.first.turns)) from error
        return attempt

    async def execute(self, **extra: Any) -> AgentRunResult[Any]:
        """Run the agent, recovering as needed; the tokens are logged however it ends."""
        try:
            result = await self._attempts(extra)
        except anyio.get_cancelled_exc_class():
            # the run was cancelled (a task group, a timeout, the worker): still log what it
            # cost, in a bounded shielded write, then let the cancellation go on
            with anyio.CancelScope(shield=True), anyio.move_on_after(CANCELLED_USAGE_WRITE_TIMEOUT):
                await self.finish()
            raise
        except Exception:
            await self.finish()
            raise
        await self.finish()
        return result

    async def _attempts(self, extra: dict[str, Any]) -> AgentRunResult[Any]:
        attempt = self.first
        while True:
            with capture_run_messages() as messages:
                try:
                    return await self.agent.run(attempt.user_prompt, **self.kwargs(attempt), **extra)
                except UsageLimitExceeded as error:
                    failure, history = error, list(messages)
            attempt = await self.after_limit(failure, history)

    async def finish(self) -> None:
        """Record the tokens of every run of this call on the activity."""
        await self.runner.record_usage(self.token_usage().priced(self.model_name()))


def exhausted(message: str) -> UsageLimitExceeded:
    """The error raised when recovery ran out of turns too."""
    error = UsageLimitExceeded(message)
    error.message = message
    error.args = (message,)
    return error
