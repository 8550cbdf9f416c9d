"""Fixtures of the telemetry tests: a pool of ``app_observed`` run as a real program."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agentexec.testing.process import ProgramProcess as PoolProcess

HERE = Path(__file__).resolve().parent
#: every wait in these tests is bounded by this (seconds)
WAIT = 60.0


@pytest.fixture
def obs_queue() -> str:
    return f"obs_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def stack(redis_server_url: str | None, postgres_server_url: str) -> dict[str, str]:
    if redis_server_url is None:
        pytest.skip("no real Redis server (worker processes cannot share fakeredis)")
    return {"AGENTEXEC_REDIS_URL": redis_server_url, "AGENTEXEC_DATABASE_URL": postgres_server_url}


@pytest.fixture
def producer(stack: dict[str, str]) -> Iterator[Any]:
    """This process's backends on the pool's stack (ax.enqueue / ax.get_result use them)."""
    from agentexec.runtime import build_backends, set_backends

    redis, database = stack["AGENTEXEC_REDIS_URL"], stack["AGENTEXEC_DATABASE_URL"]
    backends = build_backends({"queue": redis, "results": redis, "events": redis, "activity": database})
    import agentexec as ax

    ax.Base.metadata.create_all(backends.activity.engine)  # type: ignore[attr-defined]
    set_backends(backends)
    yield backends
    set_backends(None)


@pytest.fixture
def run_pool(stack: dict[str, str], obs_queue: str, tmp_path: Path) -> Iterator[Callable[..., PoolProcess]]:
    started: list[PoolProcess] = []

    def run(*args: str, **env: Any) -> PoolProcess:
        full = stack | {
            "OBS_QUEUE": obs_queue, "OBS_MARKS": str(tmp_path),
            "AGENTEXEC_LEASE_TIMEOUT": "2", "AGENTEXEC_WORKER_CONCURRENCY": "1",
        }
        full |= {k: str(v) for k, v in env.items()}
        agentexec = Path(sys.executable).parent / "agentexec"
        pool = PoolProcess.start(
            [str(agentexec), "run", "app_observed:pool", *args], full, HERE, wait=WAIT,
            unset=("AGENTEXEC_", "OBS_", "PROMETHEUS_"),
        )
        started.append(pool)
        pool.wait_output("Pool started")
        return pool

    yield run
    for pool in started:
        if pool.proc.poll() is None:
            pool.kill()
