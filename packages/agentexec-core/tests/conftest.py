"""Fixtures of core's tests: a fresh set of in-memory backends, and pools made on them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.config import CONF
from agentexec.results import Outcome
from agentexec.runtime import Backends, build_backends, set_backends


@pytest.fixture
def backends() -> Iterator[Backends]:
    url = f"memory://{uuid.uuid4().hex}"
    built = build_backends({k: url for k in ("queue", "results", "events", "activity")})  # type: ignore[misc]
    set_backends(built)
    yield built
    set_backends(None)


@pytest.fixture
def own_queue(unique_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``CONF.queue_name`` set to a name of this test's own."""
    monkeypatch.setattr(CONF, "queue_name", unique_name)
    return unique_name


@pytest.fixture
def make_pool(backends: Backends, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    monkeypatch.setattr(CONF, "num_workers", 1)
    monkeypatch.setattr(CONF, "worker_concurrency", 1)
    pools: list[Any] = []

    def make() -> Any:
        pool = ax.Pool(queue_name=f"q{uuid.uuid4().hex[:8]}", backends=backends)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown(timeout=2)


class _Job(BaseModel):
    n: int = 0


@pytest.fixture
def lost_on_last_attempt(backends: Backends, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Awaitable[ax.Task[Any]]]:
    """``await lost(lines, staged, metadata)``: enqueue a ``job`` task, take it as a consumer
    that then vanishes, write ``lines`` and stage ``staged`` as its worker did, on its last
    attempt with a lease that has already run out: the next reap dead-letters it."""
    queue: Any = backends.queue

    async def lost(lines: Sequence[Status], staged: Outcome | None, metadata: dict[str, Any] | None = None) -> ax.Task[Any]:
        task = await ax.enqueue("job", _Job(n=1), metadata=metadata)
        assert await queue.reserve(CONF.queue_name, "ghost", 1) is not None
        for status in lines:
            await backends.activity.aappend(task.agent_id, status.value.lower(), status)
        if staged is not None:
            await backends.results.stage_many([(task.agent_id, staged.encode())], 60)  # type: ignore[attr-defined]
        monkeypatch.setattr(queue, "lease_timeout", 0.01)
        monkeypatch.setattr(queue, "max_attempts", 1)
        return task

    return lost
