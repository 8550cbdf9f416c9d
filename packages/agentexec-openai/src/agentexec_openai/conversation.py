"""Max-turns recovery on the Agents SDK: which run comes next after ``MaxTurnsExceeded``.

Recovery keeps the conversation: the history the SDK reports in ``MaxTurnsExceeded.run_data``
(the run's input plus every item it produced; every tool call in it has already run) is sent
again with the wrap-up prompt appended as a user message. Of the ``recovery_turns`` turns, all
but the last keep tool use free; the last runs on a clone of the agent with
``tool_choice="none"``, which makes the model answer in text. The clone keeps its tools because
the history refers to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agentexec.runners import TokenUsage
from agents import Agent, ItemHelpers, MaxTurnsExceeded, ModelSettings
from agents.items import TResponseInputItem


@dataclass(frozen=True)
class Attempt:
    """One call of ``Runner.run`` / ``Runner.run_streamed``."""

    agent: Agent[Any]
    input: str | list[TResponseInputItem]
    max_turns: int | None


def usage_of(source: Any) -> TokenUsage:
    """The tokens of a ``RunResult``/``RunResultStreaming``, or of a failed run's ``run_data``."""
    wrapper = getattr(source, "context_wrapper", None)
    usage = getattr(wrapper, "usage", None)
    if usage is None:
        return TokenUsage()
    input_details = getattr(usage, "input_tokens_details", None)
    output_details = getattr(usage, "output_tokens_details", None)
    return TokenUsage(
        input_tokens=int(usage.input_tokens or 0),
        output_tokens=int(usage.output_tokens or 0),
        total_tokens=int(usage.total_tokens or 0),
        requests=int(usage.requests or 0),
        cached_tokens=int(getattr(input_details, "cached_tokens", 0) or 0),
        reasoning_tokens=int(getattr(output_details, "reasoning_tokens", 0) or 0),
    )


def usage_of_error(error: BaseException) -> TokenUsage:
    return usage_of(getattr(error, "run_data", None))


class RecoveryPlan:
    """The recovery runs after a ``MaxTurnsExceeded``: ``next(error)`` gives each in turn.

    ``holds_conversation`` is true when a ``session`` or server-side ``conversation_id`` already
    keeps the history; then only the wrap-up prompt is sent, or it would be there twice.
    """

    def __init__(self, wrap_up_prompt: str, recovery_turns: int, holds_conversation: bool) -> None:
        self._wrap_up: TResponseInputItem = {"role": "user", "content": wrap_up_prompt}
        self._free_turns = recovery_turns - 1
        self._holds_conversation = holds_conversation
        self._stage: Literal["new", "free", "forced"] = "new"

    def next(self, error: MaxTurnsExceeded) -> Attempt | None:
        """The next run, or ``None`` once the forced final turn has been spent (or the SDK
        gave no history to continue from)."""
        data = error.run_data
        if data is None or self._stage == "forced":
            return None
        if self._stage == "new":
            history = [*self._continue(data), self._wrap_up]
            if self._free_turns > 0:
                self._stage = "free"
                return Attempt(data.last_agent, history, self._free_turns)
        else:
            # after the free turns the wrap-up prompt is already in the history; a session
            # holds that history, so then the prompt is repeated as the new input
            history = self._continue(data) or [self._wrap_up]
        self._stage = "forced"
        return Attempt(force_answer(data.last_agent), history, 1)

    def _continue(self, data: Any) -> list[TResponseInputItem]:
        if self._holds_conversation:
            return []
        return ItemHelpers.input_to_new_input_list(data.input) + [
            item.to_input_item() for item in data.new_items
        ]


def force_answer(agent: Agent[Any]) -> Agent[Any]:
    """A clone of ``agent`` that must answer in text (``tool_choice="none"``)."""
    settings = agent.model_settings.resolve(ModelSettings(tool_choice="none"))
    return agent.clone(model_settings=settings)


def exhausted(error: MaxTurnsExceeded, message: str) -> MaxTurnsExceeded:
    """The error raised when recovery ran out too; it keeps the last run's data."""
    final = MaxTurnsExceeded(message)
    final.run_data = error.run_data
    return final
