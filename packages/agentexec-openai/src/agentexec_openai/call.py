"""One ``runner.run`` / ``runner.run_streamed`` call: its SDK runs, its recovery, its token count.

Shared by the awaited and the streamed paths, so both recover and count tokens the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agentexec import telemetry
from agentexec.runners import TokenUsage
from agents import MaxTurnsExceeded

from agentexec_openai.conversation import Attempt, RecoveryPlan, exhausted
from agentexec_openai.observed import TurnHooks, model_name

if TYPE_CHECKING:
    from agentexec_openai.runner import OpenAIRunner

log = logging.getLogger("agentexec_openai")


class RunCall:
    """State of one call: the first attempt, the recovery plan once needed, tokens so far."""

    def __init__(
        self,
        runner: OpenAIRunner,
        first: Attempt,
        context: Any,
        options: dict[str, Any],
    ) -> None:
        self.runner = runner
        self.first = first
        self.context = context
        self.options = options
        self.usage = TokenUsage()
        self._plan: RecoveryPlan | None = None
        self._hooks: TurnHooks | None = None

    def kwargs(self, attempt: Attempt) -> dict[str, Any]:
        """Keyword arguments of ``Runner.run``/``Runner.run_streamed`` for ``attempt``."""
        kwargs = {"max_turns": attempt.max_turns, "context": self.context, **self.options}
        if telemetry.on():
            if self._hooks is None:
                self._hooks = TurnHooks(self.options.get("hooks"), self.options)
            kwargs["hooks"] = self._hooks
        return kwargs

    def add_usage(self, usage: TokenUsage) -> None:
        self.usage = self.usage + usage

    async def after_max_turns(self, error: MaxTurnsExceeded) -> Attempt:
        """The recovery run to start after ``error``; raises when there is none."""
        runner = self.runner
        if not runner.should_recover(error):
            raise error
        if error.run_data is None:
            log.warning("agentexec: MaxTurnsExceeded carries no run data; cannot recover")
            raise error
        if self._plan is None:
            holds = any(self.options.get(k) is not None for k in ("session", "conversation_id"))
            self._plan = RecoveryPlan(runner.prompts.wrap_up, runner.recovery_turns, holds)
            await runner.record_recovery(self.first.max_turns)
        attempt = self._plan.next(error)
        if attempt is None:
            raise exhausted(error, runner.recovery_exhausted_message(self.first.max_turns)) from error
        return attempt

    async def finish(self) -> None:
        """Record the tokens of every run of this call on the activity."""
        model = model_name(self.first.agent, self.options)
        await self.runner.record_usage(self.usage.priced(None if model == "default" else model))
