"""Helpers of the control-plane tests: a real pool process and a real API server process on
one backend stack (SQLite file, or Redis + PostgreSQL); the test process is only an HTTP client.
(A module of its own: ``conftest`` is a name every package's tests have.)"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from agentexec.testing.process import ProgramProcess

HERE = Path(__file__).resolve().parent
#: every wait in these tests is bounded by this (seconds)
WAIT = 30.0


class Proc(ProgramProcess):
    @classmethod
    def start(cls, argv: list[str], env: dict[str, str]) -> Proc:  # type: ignore[override]
        return cls(cls.popen(argv, env, HERE), WAIT)

    def wait_for(self, text: str) -> None:
        self.wait_output(text)

    def stop(self) -> None:  # type: ignore[override]
        """SIGTERM to its group (the pool's workers too); killed if it outlives WAIT."""
        if self.proc.poll() is None:
            # a server still streaming to a client may outlive WAIT: killed then, not a failure
            with contextlib.suppress(AssertionError):
                super().stop(signal.SIGTERM, group=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ControlPlane:
    """A running pool and API server; ``url`` is the server's root."""

    stack: str
    url: str
    env: dict[str, str]
    pool: Proc
    server: Proc

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=WAIT, headers=headers)


def stack_env(name: str, request: pytest.FixtureRequest, tmp: Path) -> dict[str, str]:
    if name == "sqlite":
        return {"AGENTEXEC_DATABASE_URL": f"sqlite:///{tmp / 'agentexec.db'}"}
    if name == "postgresql":  # everything on PostgreSQL (the embedded SQL transport)
        return {"AGENTEXEC_DATABASE_URL": request.getfixturevalue("postgres_server_url")}
    redis_url = request.getfixturevalue("redis_server_url")
    if redis_url is None:
        pytest.skip("no Redis server reachable (CI always has one)")
    return {"AGENTEXEC_REDIS_URL": redis_url,
            "AGENTEXEC_DATABASE_URL": request.getfixturevalue("postgres_server_url")}


def start_control_plane(name: str, request: pytest.FixtureRequest, tmp: Path, **extra: str) -> Iterator[ControlPlane]:
    env = stack_env(name, request, tmp) | {
        "CP_QUEUE": f"cp_{uuid.uuid4().hex[:8]}", "AGENTEXEC_NUM_WORKERS": "1",
        "AGENTEXEC_LEASE_TIMEOUT": "5", **extra,
    }
    port = free_port()
    import agentexec as ax
    from agentexec_sqlalchemy.engine import get_engine

    # the tables once, here, so the server and the pool can start together without racing to it
    ax.Base.metadata.create_all(get_engine(env["AGENTEXEC_DATABASE_URL"]))
    pool = Proc.start([sys.executable, "cp_app.py"], env)
    server = Proc.start(
        [sys.executable, "-m", "uvicorn", "cp_web:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"], env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if httpx.get(f"{url}/api/agentexec/tasks", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the API server did not start:\n{server.output}")
            time.sleep(0.05)
        pool.wait_for("Pool started")
        yield ControlPlane(name, url, env, pool, server)
    finally:
        pool.stop()
        server.stop()
