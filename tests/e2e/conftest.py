"""Fixtures of the end-to-end pool tests: one backend stack per parameter, the producer wired to
it, and pool processes that never outlive their test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agentexec.config import CONF
from agentexec.runtime import Backends, build_backends, set_backends
from e2e_support import PoolProcess, Stack

#: the backend stacks every scenario can run on
STACKS = ["redis", "sqlite", "postgres"]
#: short leases so lost workers are noticed within a test's time
LEASE = "2"


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Stack:
    return make_stack(request.param, request, tmp_path)


def make_stack(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Stack:
    if name == "redis":
        redis_url = request.getfixturevalue("redis_server_url")
        if redis_url is None:
            pytest.skip("no real Redis server (worker processes cannot share fakeredis)")
        return Stack("redis", request.getfixturevalue("postgres_server_url"), redis_url)
    if name == "redis_sqlite":  # the queue on Redis, activities in a SQLite file
        redis_url = request.getfixturevalue("redis_server_url")
        if redis_url is None:
            pytest.skip("no real Redis server (worker processes cannot share fakeredis)")
        return Stack("redis_sqlite", f"sqlite:///{tmp_path / 'agentexec.db'}", redis_url)
    if name == "sqlite":
        return Stack("sqlite", f"sqlite:///{tmp_path / 'agentexec.db'}", None)
    if name == "postgres":
        return Stack("postgres", request.getfixturevalue("postgres_server_url"), None)
    raise ValueError(name)


@pytest.fixture
def producer(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backends]:
    """This process's backends, on the stack's URLs (ax.enqueue / ax.activity use them)."""
    monkeypatch.setattr(CONF, "lease_timeout", float(LEASE))
    backends = build_backends(stack.urls())  # type: ignore[arg-type]
    engine = getattr(backends.activity, "engine", None)
    if engine is not None:
        import agentexec as ax

        ax.Base.metadata.create_all(engine)
    set_backends(backends)
    yield backends
    set_backends(None)


@pytest.fixture
def queue_name() -> str:
    return f"e2e_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def run_pool(stack: Stack, queue_name: str, tmp_path: Path) -> Iterator[Callable[..., PoolProcess]]:
    """Start pool processes on the stack; any still running at the end is killed."""
    started: list[PoolProcess] = []

    def run(argv: list[str], *, queue: str | None = None, wait_ready: bool = True, **env: Any) -> PoolProcess:
        full = stack.env() | {
            "E2E_QUEUE": queue or queue_name,
            "AGENTEXEC_LEASE_TIMEOUT": LEASE,
            "AGENTEXEC_NUM_WORKERS": "1",
        }
        full |= {k: str(v) for k, v in env.items()}
        pool = PoolProcess.start(
            argv, env=full, journal=tmp_path / f"journal-{len(started)}.jsonl", wait_ready=wait_ready
        )
        started.append(pool)
        return pool

    yield run
    for pool in started:
        if pool.proc.poll() is None:
            pool.kill()
