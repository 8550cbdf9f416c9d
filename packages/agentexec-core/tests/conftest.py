"""Fixtures of core's tests: a fresh set of in-memory backends, and pools made on them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import agentexec as ax
from agentexec.config import CONF
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
