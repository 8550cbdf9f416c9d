"""Registers the pydantic-ai runner with agentexec. Imports nothing heavy: pydantic-ai is imported
when ``ax.PydanticAIRunner`` is first used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentexec.hookspecs import NameSpec, RunnerSpec, hookimpl


def _runner() -> Any:
    from agentexec_pydantic_ai.runner import PydanticAIRunner

    return PydanticAIRunner


@hookimpl
def agentexec_runners() -> Iterator[RunnerSpec]:
    yield RunnerSpec("pydantic-ai", _runner, "pydantic-ai (Pydantic AI agents)")


@hookimpl
def agentexec_names() -> Iterator[NameSpec]:
    yield NameSpec("agentexec", "PydanticAIRunner", _runner)
