"""Offline test doubles for agents run by ``ax.PydanticAIRunner``: no network, no API key.

A :class:`ScriptedModel` is a pydantic-ai ``FunctionModel`` that answers each model request with
the next turn of its script and records what it was sent. Give it to the runner (or to
``agent.override(model=...)``), so the agent under test keeps its production model name::

    model = ScriptedModel([
        [tool_call("report_activity", message="Reading", percentage=50)],
        [answer("done")],
    ])
    runner = ax.PydanticAIRunner(agent_id, model=model)
    result = await runner.run(agent, "task")
    assert model.calls[1].transcript()[-1].startswith("tool_result:")

Every call reports ``usage_per_call`` tokens, streamed or not (``FunctionModel`` itself estimates
them from the text), so token accounting is testable. A streamed request replays the scripted
response as stream events.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    ModelResponseStreamEvent,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters, StreamedResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

_STREAMING: ContextVar[bool] = ContextVar("agentexec_pydantic_ai_streaming", default=False)


@dataclass(frozen=True)
class FinalResult:
    """A call of the agent's output tool (structured ``output_type``) with ``data``; the tool's
    name is looked up when the turn is played."""

    data: dict[str, Any]


#: what a turn holds: response parts, or a structured final result
TurnPart = ModelResponsePart | FinalResult
Turn = Sequence[TurnPart]
#: a script: the turns in order, or a function of the call's index and what it was sent
Script = Sequence[Turn] | Callable[[int, "ModelCall"], Turn]


def tool_call(name: str, /, **arguments: Any) -> ToolCallPart:
    """A tool call with a fresh call id."""
    return ToolCallPart(name, arguments, tool_call_id=f"call_{uuid.uuid4().hex}")


def answer(text: str) -> TextPart:
    """A text answer; a turn with no tool call ends a run whose output is text."""
    return TextPart(text)


def final_result(**data: Any) -> FinalResult:
    """The structured answer of an agent with an ``output_type``: a call of its output tool."""
    return FinalResult(data)


@dataclass(frozen=True)
class ModelCall:
    """What one model request was sent."""

    instructions: str | None
    messages: list[ModelMessage]
    model_settings: ModelSettings | None
    function_tools: tuple[str, ...]
    output_tools: tuple[str, ...]
    allow_text_output: bool
    streamed: bool

    @property
    def tool_choice(self) -> Any:
        return (self.model_settings or {}).get("tool_choice")

    def transcript(self) -> list[str]:
        """The messages as plain lines: ``user: ...``, ``assistant: ...``,
        ``tool_call: name {args}``, ``tool_result: ...``."""
        return [line for message in self.messages for line in _lines(message)]


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable):
        return "".join(item for item in content if isinstance(item, str))
    return str(content)


def _lines(message: ModelMessage) -> Iterable[str]:
    if isinstance(message, ModelRequest):
        for part in message.parts:
            if isinstance(part, UserPromptPart):
                yield f"user: {_content(part.content)}"
            elif isinstance(part, ToolReturnPart):
                yield f"tool_result: {part.model_response_str()}"
            elif isinstance(part, RetryPromptPart):
                prefix = "tool_result" if part.tool_name else "user"
                yield f"{prefix}: {part.model_response()}"
    elif isinstance(message, ModelResponse):
        for response_part in message.parts:
            if isinstance(response_part, TextPart):
                yield f"assistant: {response_part.content}"
            elif isinstance(response_part, ToolCallPart):
                yield f"tool_call: {response_part.tool_name} {response_part.args_as_json_str()}"


class ScriptExhausted(AssertionError):
    """The model was called more times than its script has turns."""


class ScriptedModel(FunctionModel):
    """A ``FunctionModel`` that plays back a script and records every request in :attr:`calls`."""

    def __init__(
        self,
        script: Script,
        *,
        usage_per_call: tuple[int, int] = (10, 5),
        model_name: str = "scripted",
    ) -> None:
        super().__init__(self._respond, model_name=model_name)
        self.script = script
        self.usage_per_call = usage_per_call
        self.calls: list[ModelCall] = []

    async def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        call = ModelCall(
            instructions=info.instructions,
            messages=copy.deepcopy(messages),
            model_settings=info.model_settings,
            function_tools=tuple(tool.name for tool in info.function_tools),
            output_tools=tuple(tool.name for tool in info.output_tools),
            allow_text_output=info.allow_text_output,
            streamed=_STREAMING.get(),
        )
        index = len(self.calls)
        self.calls.append(call)
        if callable(self.script):
            turn = self.script(index, call)
        elif index < len(self.script):
            turn = self.script[index]
        else:
            raise ScriptExhausted(
                f"ScriptedModel was called {index + 1} times but its script has "
                f"{len(self.script)} turns; last call's messages: {call.transcript()}"
            )
        parts = [_resolve(part, call) for part in turn]
        inp, out = self.usage_per_call
        return ModelResponse(parts=parts, usage=RequestUsage(input_tokens=inp, output_tokens=out))

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncIterator[StreamedResponse]:
        token = _STREAMING.set(True)
        try:
            response = await self.request(messages, model_settings, model_request_parameters)
        finally:
            _STREAMING.reset(token)
        _, parameters = self.prepare_request(model_settings, model_request_parameters)
        yield ReplayedResponse(
            model_request_parameters=parameters, _model_name=self.model_name, _response=response
        )


def _resolve(part: TurnPart, call: ModelCall) -> ModelResponsePart:
    if not isinstance(part, FinalResult):
        return part
    if not call.output_tools:
        raise AssertionError("final_result(...) needs an agent with a structured output_type")
    return ToolCallPart(call.output_tools[0], dict(part.data), tool_call_id=f"call_{uuid.uuid4().hex}")


@dataclass
class ReplayedResponse(StreamedResponse):
    """A finished ``ModelResponse`` played back as stream events, with its own usage."""

    _model_name: str
    _response: ModelResponse
    _timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self._usage = self._response.usage

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        manager = self._parts_manager
        for index, part in enumerate(self._response.parts):
            if isinstance(part, TextPart):
                for event in manager.handle_text_delta(vendor_part_id=index, content=part.content):
                    yield event
            elif isinstance(part, ToolCallPart):
                yield manager.handle_tool_call_part(
                    vendor_part_id=index,
                    tool_name=part.tool_name,
                    args=cast("str | dict[str, Any] | None", part.args),
                    tool_call_id=part.tool_call_id,
                )
            else:
                raise AssertionError(f"ScriptedModel cannot stream a {type(part).__name__}")

    async def close_stream(self) -> None:
        pass

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def provider_name(self) -> str | None:
        return None

    @property
    def provider_url(self) -> str | None:
        return None

    @property
    def timestamp(self) -> datetime:
        return self._timestamp


__all__ = [
    "FinalResult",
    "ModelCall",
    "ReplayedResponse",
    "ScriptExhausted",
    "ScriptedModel",
    "answer",
    "final_result",
    "tool_call",
]
