"""Fixtures shared by every test directory: real services, found or started, never faked in CI.

Order for each service: an explicit env var, then the local server, then a testcontainers
container when Docker answers, then (outside CI) a fallback (fakeredis / SQLite) or a skip.
With ``CI=true`` an unreachable Redis or PostgreSQL fails the run instead of falling back.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("AGENTEXEC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "AGENTEXEC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout=1):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str | None]:
    """A real Redis URL, or ``None`` when only fakeredis is available (never in CI)."""
    if _reachable(REDIS_URL):
        yield REDIS_URL
        return
    if IN_CI:
        pytest.fail(f"CI=true but Redis at {REDIS_URL} is unreachable; start it (see DEVELOPERS.md)")
    if _docker_available():
        from testcontainers.redis import RedisContainer  # type: ignore[import-untyped]

        with RedisContainer() as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    yield None


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A SQLAlchemy URL of a fresh PostgreSQL database for this test session (dropped after)."""
    base = POSTGRES_URL
    if not _reachable(base):
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL at {base} is unreachable; start it (see DEVELOPERS.md)")
        if _docker_available():
            from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

            with PostgresContainer("postgres:16", driver="psycopg") as container:
                yield container.get_connection_url()
            return
        pytest.skip("no PostgreSQL reachable (set AGENTEXEC_TEST_POSTGRES_URL)")
    import sqlalchemy as sa

    name = f"agentexec_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses (queue names, key prefixes)."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _forget_the_pools_a_test_made() -> Iterator[None]:
    """``ax.enqueue`` checks task names against the pools of this process on the target queue;
    a pool a test made (or an app module it imported) must not stay registered for the next."""
    yield
    import sys

    registry = sys.modules.get("agentexec.worker.registry")
    if registry is not None:
        registry._pools.clear()
