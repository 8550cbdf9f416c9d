"""Fixtures for the pydantic-ai runner tests: no network, no API key, in-memory activity."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real model: without the scripted model an agent fails for want of a
    key instead of making a request."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GROQ_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def memory_backends() -> Iterator[Any]:
    """Fresh in-memory backends as this process's, restored afterwards."""
    from agentexec import runtime

    url = f"memory://pydantic-ai-{uuid.uuid4().hex[:8]}"
    previous = runtime.get_backends() if runtime.has_backends() else None
    backends = runtime.build_backends({"queue": url, "results": url, "events": url, "activity": url})
    runtime.set_backends(backends)
    yield backends
    runtime.set_backends(previous)
