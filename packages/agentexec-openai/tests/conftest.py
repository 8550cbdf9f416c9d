"""Fixtures for the OpenAI runner tests: no network, no API key, no tracing, in-memory activity."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

# tracing would try to export spans to api.openai.com; set before the SDK is imported
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the real API: an agent that misses the scripted provider fails with
    'Missing credentials' instead of making a request."""
    import agents

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    agents.set_tracing_disabled(True)


@pytest.fixture
def memory_backends() -> Iterator[Any]:
    """Fresh in-memory backends as this process's, restored afterwards."""
    from agentexec import runtime

    url = f"memory://openai-{uuid.uuid4().hex[:8]}"
    previous = runtime.get_backends() if runtime.has_backends() else None
    backends = runtime.build_backends({"queue": url, "results": url, "events": url, "activity": url})
    runtime.set_backends(backends)
    yield backends
    runtime.set_backends(previous)
