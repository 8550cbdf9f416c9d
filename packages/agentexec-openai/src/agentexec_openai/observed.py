"""Spans for the agent runs and model turns of an ``OpenAIRunner`` (:mod:`agentexec.telemetry`).

A run is an ``invoke_agent <agent>`` span around ``Runner.run``; each model call is a
``chat <model>`` span (OpenTelemetry's GenAI conventions) with its token usage, opened and ended
by run hooks chained in front of the caller's own ``hooks=``. Nothing of this exists unless an
instrument is on: the runner then passes the caller's hooks through untouched.
"""

from __future__ import annotations

from typing import Any

from agentexec import telemetry
from agents import Agent, RunHooks


def model_name(agent: Agent[Any], options: dict[str, Any]) -> str:
    """The model an agent's turns go to, as far as the agent or the run config tells."""
    model = agent.model
    if isinstance(model, str) and model:
        return model
    named = getattr(model, "model", None)
    if isinstance(named, str) and named:
        return named
    config_model = getattr(options.get("run_config"), "model", None)
    if isinstance(config_model, str) and config_model:
        return config_model
    return "default"


def run_attributes(agent: Agent[Any], options: dict[str, Any]) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.system": "openai",
        "gen_ai.agent.name": agent.name,
        "gen_ai.request.model": model_name(agent, options),
    }


class TurnHooks(RunHooks[Any]):
    """Opens a span when a model call starts, ends it with the call's usage, then calls the
    caller's own hooks (``inner``)."""

    def __init__(self, inner: RunHooks[Any] | None, options: dict[str, Any]) -> None:
        self.inner = inner
        self.options = options
        self.turns = 0
        self._open: dict[int, telemetry.Begun] = {}

    async def on_llm_start(self, context: Any, agent: Any, system_prompt: Any, input_items: Any) -> None:
        self.turns += 1
        model = model_name(agent, self.options)
        self._open[id(agent)] = telemetry.begin(f"chat {model}", telemetry.CLIENT, {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": model,
            "gen_ai.agent.name": agent.name,
            "agentexec.turn": self.turns,
        })
        if self.inner is not None:
            await self.inner.on_llm_start(context, agent, system_prompt, input_items)

    async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
        spans = self._open.pop(id(agent), None)
        if spans is not None:
            usage = getattr(response, "usage", None)
            if usage is not None:
                spans.set_attribute("gen_ai.usage.input_tokens", int(usage.input_tokens or 0))
                spans.set_attribute("gen_ai.usage.output_tokens", int(usage.output_tokens or 0))
            spans.end()
        if self.inner is not None:
            await self.inner.on_llm_end(context, agent, response)

    async def on_agent_start(self, context: Any, agent: Any) -> None:
        if self.inner is not None:
            await self.inner.on_agent_start(context, agent)

    async def on_agent_end(self, context: Any, agent: Any, output: Any) -> None:
        if self.inner is not None:
            await self.inner.on_agent_end(context, agent, output)

    async def on_handoff(self, context: Any, from_agent: Any, to_agent: Any) -> None:
        if self.inner is not None:
            await self.inner.on_handoff(context, from_agent, to_agent)

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        if self.inner is not None:
            await self.inner.on_tool_start(context, agent, tool)

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: Any) -> None:
        if self.inner is not None:
            await self.inner.on_tool_end(context, agent, tool, result)
