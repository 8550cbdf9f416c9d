"""Fixtures of the telemetry tests: a pool of ``app_observed`` run as a real program."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
#: every wait in these tests is bounded by this (seconds)
WAIT = 60.0


class PoolProcess:
    """``agentexec run app_observed:pool`` in a subprocess; its output collected as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=HERE, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_output(self, text: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                time.sleep(0.2)
                if text in self.output:
                    return
                raise AssertionError(f"pool exited ({self.proc.returncode}) before {text!r}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output}")
            time.sleep(0.02)

    def stop(self, timeout: float = WAIT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"pool did not exit within {timeout}s:\n{self.output}") from None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


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
        full = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTEXEC_", "OBS_", "PROMETHEUS_"))}
        full |= stack | {
            "PYTHONUNBUFFERED": "1", "OBS_QUEUE": obs_queue, "OBS_MARKS": str(tmp_path),
            "AGENTEXEC_LEASE_TIMEOUT": "2", "AGENTEXEC_WORKER_CONCURRENCY": "1",
        }
        full |= {k: str(v) for k, v in env.items()}
        agentexec = Path(sys.executable).parent / "agentexec"
        pool = PoolProcess([str(agentexec), "run", "app_observed:pool", *args], full)
        started.append(pool)
        pool.wait_output("Pool started")
        return pool

    yield run
    for pool in started:
        if pool.proc.poll() is None:
            pool.kill()
