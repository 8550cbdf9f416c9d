"""Fixtures of the Redis adapter's tests.

``redis_url`` is the real Redis from the root conftest (always in CI), else a URL served by
fakeredis (patched into ``agentexec_redis.client``), so every test runs either way.
``redis_process`` starts private ``redis-server`` processes for restart, ACL and TLS tests;
``cluster_url`` is the session's real Redis Cluster (``redis_cluster_url`` in the root conftest).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from agentexec.config import CONF
from agentexec_redis import client

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FAKE_URL = "redis://fakeredis.invalid:6379/0"


def _fix_fakeredis_blmove() -> None:
    """fakeredis's BLMOVE never blocks (it returns nil at once on an empty list); route the
    direction the queue uses (RIGHT -> LEFT, which is BRPOPLPUSH) to its working blocking code.
    Only the local fallback needs this: CI always runs on a real Redis."""
    import functools

    from fakeredis import _msgs as msgs
    from fakeredis._command_args_parsing import Timeout
    from fakeredis._commands import command
    from fakeredis._helpers import casematch
    from fakeredis.commands_mixins.list_mixin import ListCommandsMixin

    original = ListCommandsMixin.blmove

    @command(name="BLMOVE", fixed=(bytes, bytes, bytes, bytes, Timeout), flags=msgs.FLAG_NO_SCRIPT)
    def blmove(self: Any, source: bytes, destination: bytes, src: bytes, dst: bytes, timeout: float) -> Any:
        if casematch(src, b"RIGHT") and casematch(dst, b"LEFT"):
            return self._blocking(timeout, functools.partial(self._brpoplpush_pass, source, destination))
        raise NotImplementedError("test shim: only BLMOVE src dst RIGHT LEFT is supported")

    if not getattr(original, "_agentexec_shim", False):
        blmove._agentexec_shim = True  # type: ignore[attr-defined]
        ListCommandsMixin.blmove = blmove  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def fake_server() -> fakeredis.FakeServer:
    _fix_fakeredis_blmove()
    return fakeredis.FakeServer()


@pytest.fixture
async def cluster_url(redis_cluster_url: str) -> AsyncIterator[str]:
    """The session's Redis Cluster (root conftest), as a ``redis+cluster://`` URL; this test's
    pools are closed after it."""
    yield redis_cluster_url
    await client.close_redis(redis_cluster_url)


@pytest.fixture
async def redis_url(
    redis_server_url: str | None, fake_server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """A Redis URL for the backends under test; their pools are closed after the test."""
    if redis_server_url is None:
        real_async, real_sync = client._new_async, client._new_sync

        def new_async(url: str) -> Any:
            if url == FAKE_URL:  # a blocking pool of the configured size, as in production
                return fakeredis.FakeAsyncRedis(
                    server=fake_server, connection_pool_class=aioredis.BlockingConnectionPool,
                    max_connections=CONF.redis_pool_size,
                )
            return real_async(url)

        def new_sync(url: str) -> Any:
            if url == FAKE_URL:
                return fakeredis.FakeRedis(server=fake_server)
            return real_sync(url)

        monkeypatch.setattr(client, "_new_async", new_async)
        monkeypatch.setattr(client, "_new_sync", new_sync)
    url = redis_server_url or FAKE_URL
    yield url
    await client.close_redis()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A private ``redis-server`` on a free loopback port (data in ``directory``)."""

    def __init__(self, directory: Path, *args: str, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, ready: Callable[[RedisProcess], bool] | None = None) -> RedisProcess:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--save", "", "--daemonize", "no", "--logfile",
             str(self.directory / "redis.log"), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
            if (ready or _answers_ping)(self):
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start within 10 s")

    def cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10,
            check=True,
        ).stdout

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def _answers_ping(server: RedisProcess) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    """Factory: ``redis_process(*server_args)`` gives a started private redis-server."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if IN_CI:
            pytest.fail("CI=true but redis-server/redis-cli are not installed (apt-get install redis-server)")
        pytest.skip("redis-server/redis-cli not installed (apt-get install redis-server)")
    started: list[RedisProcess] = []

    def make(
        *args: str, name: str | None = None, start: bool = True, port: int | None = None
    ) -> RedisProcess:
        server = RedisProcess(tmp_path / (name or f"redis{len(started)}"), *args, port=port)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop(signal.SIGKILL)
