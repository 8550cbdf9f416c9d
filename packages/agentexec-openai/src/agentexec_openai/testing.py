"""Offline test doubles for agents run by ``ax.OpenAIRunner``: no network, no API key.

A :class:`ScriptedModel` answers each model call with the next turn of its script and records
what it was sent; :func:`scripted_run_config` injects it into the real ``Runner.run`` /
``Runner.run_streamed`` through ``RunConfig(model_provider=...)``, so the agent under test keeps
its production ``model="gpt-4.1"``::

    model = ScriptedModel([
        [tool_call("report_activity", message="Reading", percentage=50)],
        [answer("done")],
    ])
    runner = ax.OpenAIRunner(agent_id, run_config=scripted_run_config(model))
    result = await runner.run(agent, "task")
    assert model.calls[1].transcript()[-1].startswith("tool_result:")
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents import ItemHelpers, ModelSettings, RunConfig
from agents.items import ModelResponse, TResponseInputItem, TResponseOutputItem
from agents.models.interface import Model, ModelProvider
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)

#: one model turn: the output items it returns
Turn = Sequence[TResponseOutputItem]
#: a script: the turns in order, or a function of the call's index and what it was sent
Script = Sequence[Turn] | Callable[[int, "ModelCall"], Turn]


def tool_call(name: str, /, **arguments: Any) -> ResponseFunctionToolCall:
    """A function-call output item with a fresh call id (the SDK skips a repeated call id)."""
    call_id = uuid.uuid4().hex
    return ResponseFunctionToolCall(
        type="function_call",
        id=f"fc_{call_id}",
        call_id=f"call_{call_id}",
        name=name,
        arguments=json.dumps(arguments),
        status="completed",
    )


def answer(text: str) -> ResponseOutputMessage:
    """An assistant message output item; a turn with no tool call ends the run with it."""
    return ResponseOutputMessage(
        id=f"msg_{uuid.uuid4().hex}",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


@dataclass(frozen=True)
class ModelCall:
    """What one model call was sent."""

    instructions: str | None
    input: list[TResponseInputItem]
    tool_choice: Any
    tools: tuple[str, ...]
    streamed: bool

    def transcript(self) -> list[str]:
        """The input as plain lines: ``user: ...``, ``assistant: ...``, ``tool_call: name {args}``,
        ``tool_result: ...``."""
        return [line for item in self.input if (line := _line(item)) is not None]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def _line(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind == "function_call":
        return f"tool_call: {item.get('name')} {item.get('arguments')}"
    if kind == "function_call_output":
        return f"tool_result: {_text(item.get('output'))}"
    if "role" in item and kind in (None, "message"):
        return f"{item['role']}: {_text(item.get('content'))}"
    return None


class ScriptExhausted(AssertionError):
    """The model was called more times than its script has turns."""


@dataclass
class ScriptedModel(Model):
    """A ``Model`` that plays back a script and records every call in :attr:`calls`.

    Each call reports ``usage_per_call`` tokens (1 request), so token accounting is testable.
    """

    script: Script
    usage_per_call: tuple[int, int] = (10, 5)
    calls: list[ModelCall] = field(default_factory=list)

    def _next(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: Sequence[Any],
        streamed: bool,
    ) -> list[TResponseOutputItem]:
        call = ModelCall(
            instructions=system_instructions,
            input=copy.deepcopy(ItemHelpers.input_to_new_input_list(input)),
            tool_choice=model_settings.tool_choice,
            tools=tuple(str(getattr(tool, "name", tool)) for tool in tools),
            streamed=streamed,
        )
        index = len(self.calls)
        self.calls.append(call)
        if callable(self.script):
            return list(self.script(index, call))
        if index >= len(self.script):
            raise ScriptExhausted(
                f"ScriptedModel was called {index + 1} times but its script has "
                f"{len(self.script)} turns; last call's input: {call.transcript()}"
            )
        return list(self.script[index])

    def _usage(self) -> Usage:
        inp, out = self.usage_per_call
        return Usage(requests=1, input_tokens=inp, output_tokens=out, total_tokens=inp + out)

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
        **kwargs: Any,
    ) -> ModelResponse:
        output = self._next(system_instructions, input, model_settings, tools, streamed=False)
        return ModelResponse(output=output, usage=self._usage(), response_id=None)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        output = self._next(system_instructions, input, model_settings, tools, streamed=True)
        inp, out = self.usage_per_call
        usage = ResponseUsage.model_validate({
            "input_tokens": inp,
            "output_tokens": out,
            "total_tokens": inp + out,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        })
        response = Response(
            id=f"resp_{uuid.uuid4().hex}",
            created_at=0,
            model="scripted",
            object="response",
            output=output,
            tool_choice="auto",
            tools=[],
            parallel_tool_calls=False,
            status="completed",
            usage=usage,
        )
        # one completed event is all Runner.run_streamed needs to produce its stream events
        yield ResponseCompletedEvent(type="response.completed", response=response, sequence_number=0)


class ScriptedProvider(ModelProvider):
    """A ``ModelProvider`` giving ``model`` for every model name."""

    def __init__(self, model: Model) -> None:
        self.model = model

    def get_model(self, model_name: str | None) -> Model:
        return self.model


def scripted_run_config(model: Model, **config: Any) -> RunConfig:
    """``RunConfig(model_provider=ScriptedProvider(model), tracing_disabled=True, **config)``."""
    config.setdefault("tracing_disabled", True)
    return RunConfig(model_provider=ScriptedProvider(model), **config)


__all__ = [
    "ModelCall",
    "ScriptExhausted",
    "ScriptedModel",
    "ScriptedProvider",
    "answer",
    "scripted_run_config",
    "tool_call",
]
