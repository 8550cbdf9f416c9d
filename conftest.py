"""Fixtures shared by every test directory: real services, found or started, never faked in CI.

Order for each service: an explicit env var, then the local server, then a testcontainers
container when Docker answers, then (outside CI) a fallback (fakeredis / SQLite) or a skip.
With ``CI=true`` an unreachable Redis or PostgreSQL fails the run instead of falling back.

``redis_cluster_url`` starts a real 3-master Redis Cluster once per test session (local
``redis-server`` binaries; a failure to start it fails the tests in CI, a missing binary skips
them elsewhere).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
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


#: cluster nodes started by ``redis_cluster_url``; how long the cluster may take to form
CLUSTER_NODES = 3
CLUSTER_START_TIMEOUT = 20.0

# looked up here, not in the forked child: preexec_fn must not import or dlopen
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_the_tests() -> None:
    """In a cluster node before exec: a test run that is itself killed takes the node along."""
    if _prctl is not None:
        _prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """Free loopback ports whose cluster-bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 < 65536 and port not in ports and _port_free(port + 10000):
            ports.append(port)
    return ports


def _cli(port: int, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True, text=True, timeout=timeout,
    )


class _Cluster:
    """``CLUSTER_NODES`` masters sharing the 16384 slots, each a ``redis-server`` child process
    (not daemonized: it dies with the test run even when that is killed)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ports = _cluster_ports(CLUSTER_NODES)
        self.procs: list[subprocess.Popen[bytes]] = []

    def log(self, port: int) -> str:
        path = self.directory / f"node-{port}.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else "(no log)"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for port in self.ports:
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                 "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                 "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--logfile", f"node-{port}.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_the_tests,
            ))
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT
        for port, proc in zip(self.ports, self.procs, strict=True):
            while _cli(port, "ping").stdout.strip() != "PONG":
                if proc.poll() is not None:
                    raise RuntimeError(f"cluster node on port {port} exited:\n{self.log(port)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node on port {port} did not answer:\n{self.log(port)}")
                time.sleep(0.05)
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=CLUSTER_START_TIMEOUT,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
        for port in self.ports:
            while "cluster_state:ok" not in _cli(port, "cluster", "info").stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {port} not at cluster_state:ok within {CLUSTER_START_TIMEOUT}s")
                time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``redis+cluster://`` URL of a 3-master Redis Cluster started for this test session
    (from ``redis-server --cluster-enabled yes`` and ``redis-cli --cluster create``), shut down
    and removed after. With ``CI=true`` a cluster that cannot start fails the tests; elsewhere,
    missing Redis binaries skip them."""
    missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true but {', '.join(missing)} not installed (apt-get install redis-server)")
        pytest.skip(f"{', '.join(missing)} not installed: no local Redis Cluster (apt-get install redis-server)")
    errors: list[str] = []
    for attempt in range(3):  # a port taken by someone else between the check and the bind
        cluster = _Cluster(tmp_path_factory.mktemp(f"redis-cluster-{attempt}"))
        try:
            cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
            cluster.stop()
            continue
        try:
            yield f"redis+cluster://127.0.0.1:{cluster.ports[0]}/0"
        finally:
            cluster.stop()
        return
    pytest.fail("could not start a local Redis Cluster:\n" + "\n---\n".join(errors))


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

    registry = sys.modules.get("agentexec.registry")
    if registry is not None:
        registry._pools.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Captured output may hold text a test wrote on purpose (half a surrogate pair, from the
    poison-data tests); pytest-xdist cannot send it to the controller as UTF-8, so it is
    escaped here, in the report only."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.sections = [
        (title, text.encode("utf-8", "backslashreplace").decode("utf-8")) for title, text in report.sections
    ]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # execnet sets COLUMNS=80 and LINES=24 in its workers; the CLI's piped output (160
        # columns without COLUMNS) must look the same under xdist as in a plain run
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)
