"""Small helpers shared by the suites."""

from __future__ import annotations

import inspect
import time
import uuid
from typing import Any

import pytest

from agentexec.task import Envelope, Priority


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def envelope(queue_name: str, n: int = 0, priority: Priority = Priority.LOW) -> Envelope:
    """A task envelope whose ``context["n"]`` tells tasks apart in assertions."""
    return Envelope(
        agent_id=uuid.uuid4(),
        task_name="kit_task",
        context={"n": n},
        priority=priority,
        queue_name=queue_name,
        enqueued_at=time.time(),
    )


def numbers(envelopes: list[Envelope]) -> list[int]:
    return [int(e.context["n"]) for e in envelopes]


async def push_raw(queue: Any, queue_name: str, payload: str, priority: Priority) -> None:
    """Call the queue's optional ``push_raw`` (sync or async)."""
    method = getattr(queue, "push_raw", None)
    if method is None:
        pytest.fail(
            "Capabilities.raw_payloads is on but the queue has no push_raw(queue_name, payload, "
            "priority). Add one, or declare `capabilities = Capabilities(raw_payloads=False)`."
        )
    result = method(queue_name, payload, priority)
    if inspect.isawaitable(result):
        await result
