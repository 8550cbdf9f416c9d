"""Connections: one pool per process and URL, the documented entry points, TLS/ACL/unix URLs."""

from __future__ import annotations

import multiprocessing
import socket
import ssl
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from agentexec.config import CONF
from agentexec.task import Envelope, Priority
from agentexec_redis import client
from agentexec_redis.client import close_redis, get_redis, get_redis_sync
from agentexec_redis.queue import RedisQueue
from agentexec_redis.results import RedisResults

pytestmark = pytest.mark.anyio


async def test_one_client_per_url_and_a_working_pool(redis_url: str, unique_name: str) -> None:
    r = await get_redis(redis_url)
    assert await get_redis(redis_url) is r
    sync = get_redis_sync(redis_url)
    assert get_redis_sync(redis_url) is sync
    await r.rpush(unique_name, b"x")
    assert sync.llen(unique_name) == 1
    await close_redis()
    fresh = await get_redis(redis_url)
    assert fresh is not r and await fresh.llen(unique_name) == 1
    await fresh.delete(unique_name)


async def test_the_pool_is_sized_by_conf(redis_server_url: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "redis_pool_size", 4)
    monkeypatch.setattr(CONF, "redis_pool_timeout", 2)
    url = redis_server_url or "redis://127.0.0.1:6379/0"
    pool = client._new_async(url).connection_pool
    assert (pool.max_connections, pool.timeout) == (4, 2)  # type: ignore[attr-defined]
    sync_pool = client._new_sync(url).connection_pool
    assert (sync_pool.max_connections, sync_pool.timeout) == (4, 2)  # type: ignore[attr-defined]


async def test_conf_redis_url_is_the_default(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "redis_url", None)
    with pytest.raises(RuntimeError, match="AGENTEXEC_REDIS_URL"):
        await get_redis()
    monkeypatch.setattr(CONF, "redis_url", redis_url)
    assert await get_redis() is await get_redis(redis_url)
    assert RedisQueue().url == redis_url


async def test_documented_entry_points_resolve_through_the_plugin(redis_url: str) -> None:
    import agentexec as ax
    from agentexec.core import redis_client

    assert redis_client.get_redis is get_redis
    assert redis_client.get_redis_sync is get_redis_sync
    assert ax.close_redis is close_redis


def _child_gets_its_own_client(url: str, out: Any) -> None:
    inherited = client._sync_clients.get(url)
    fresh = get_redis_sync(url)
    out.put(inherited is not None and fresh is not inherited and bool(fresh.ping()))


async def test_a_forked_child_opens_its_own_pool(redis_url: str) -> None:
    get_redis_sync(redis_url).ping()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_gets_its_own_client, args=(redis_url, out))
    child.start()
    child.join(10)
    assert out.get(timeout=5) is True


def _tls_files(directory: Path) -> dict[str, Path]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=agentexec-test-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "1", "-extfile", "ext")
    return {name: directory / f"{name}" for name in ("ca.crt", "server.crt", "server.key")}


def _tls_ping(ca: Path) -> Callable[[Any], bool]:
    def ready(server: Any) -> bool:
        context = ssl.create_default_context(cafile=str(ca))
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # the server answers TLS
        except OSError:
            return False

    return ready


@pytest.mark.slow
async def test_tls_acl_user_and_unix_socket_urls(
    redis_process: Callable[..., Any], tmp_path: Path
) -> None:
    """``rediss://user:password@host`` (TLS + an ACL user) and ``unix://`` work as given."""
    files = _tls_files(tmp_path)
    sock = tmp_path / "redis.sock"
    server = redis_process(
        "--port", "0", "--tls-port", "PORT", "--tls-cert-file", str(files["server.crt"]),
        "--tls-key-file", str(files["server.key"]), "--tls-ca-cert-file", str(files["ca.crt"]),
        "--tls-auth-clients", "no", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--user", "default", "off",
        "--user", "worker", "on", ">s3cret", "~*", "&*", "+@all",
        start=False,
    )
    server.args = tuple(str(server.port) if a == "PORT" else a for a in server.args)
    server.start(ready=lambda s: sock.exists())
    with anyio.fail_after(5):
        while not _tls_ping(files["ca.crt"])(server):
            await anyio.sleep(0.05)

    tls_url = f"rediss://worker:s3cret@127.0.0.1:{server.port}/0?ssl_ca_certs={files['ca.crt']}"
    unix_url = f"unix://worker:s3cret@{sock}?db=0"
    try:
        for url in (tls_url, unix_url):
            queue, results = RedisQueue(url), RedisResults(url)
            name = f"q-{uuid.uuid4().hex[:8]}"
            sent = Envelope(agent_id=uuid.uuid4(), task_name="t", context={}, queue_name=name)
            with anyio.fail_after(10):
                await queue.push(sent, Priority.LOW)
                lease = await queue.reserve(name, "c1", 1)
                assert lease is not None and lease.envelope == sent
                await queue.ack(lease)
                await results.set(sent.agent_id, b"ok", 60)
                assert await results.wait(sent.agent_id, 5) == b"ok"
            assert (await get_redis(url)).connection_pool.connection_kwargs["username"] == "worker"
            assert get_redis_sync(url).llen(name) == 0
        # the default user is off: without the ACL user the same server refuses
        refused = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={files['ca.crt']}"
        with pytest.raises(Exception, match=r"(?i)auth|NOPERM|WRONGPASS|disabled"):
            await (await get_redis(refused)).ping()
    finally:
        await close_redis()
