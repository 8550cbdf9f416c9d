"""Registers the OpenAI Agents SDK runner with agentexec. Imports nothing heavy: the SDK is
imported when ``ax.OpenAIRunner`` is first used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentexec.hookspecs import NameSpec, RunnerSpec, hookimpl


def _runner() -> Any:
    from agentexec_openai.runner import OpenAIRunner

    return OpenAIRunner


@hookimpl
def agentexec_runners() -> Iterator[RunnerSpec]:
    yield RunnerSpec("openai", _runner, "OpenAI Agents SDK")


@hookimpl
def agentexec_names() -> Iterator[NameSpec]:
    yield NameSpec("agentexec", "OpenAIRunner", _runner)
