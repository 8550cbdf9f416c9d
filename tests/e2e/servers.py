"""Private servers for the fault tests: a PostgreSQL cluster and a Redis the test may stop and
start as it likes, and a small filesystem it may fill up. The shared servers (the ones every
other test and every other engineer's test run uses) are never stopped.

Each needs what a developer machine or CI runner as root has: PostgreSQL's binaries
(``initdb``, ``pg_ctl``; run as the ``postgres`` user when we are root), ``redis-server``, and
``mount -t tmpfs``; a test skips, saying which, when they are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port (trust auth, fsync off)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
        if not found[-1]:
            pytest.skip("PostgreSQL's initdb is not installed (a private cluster is needed)")
        self.bin = Path(found[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="agentexec-pg-"))
        self.user: list[str] = []
        if os.geteuid() == 0:
            try:
                shutil.chown(self.root, "postgres")
            except (LookupError, PermissionError):
                pytest.skip("running as root without a postgres user: initdb refuses root")
            self.user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._run(
            "initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        )

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.user, str(self.bin / tool), *args], check=True, timeout=60,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def start(self) -> PrivatePostgres:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.root / "data"), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: the server disconnects every client and stops, as ``systemctl stop`` does;
        ``immediate``: as a crash."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A throwaway ``redis-server`` on a free port (append-only file on, so a restart keeps
    what was written, as a production Redis configured for a queue does)."""

    def __init__(self, *args: str) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (a private server is needed)")
        self.root = Path(tempfile.mkdtemp(prefix="agentexec-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.args = ["--appendonly", "yes", "--appendfsync", "always", "--save", "", *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def small_filesystem(size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted for the test (root only), removed after."""
    mount_point = Path(tempfile.mkdtemp(prefix="agentexec-full-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs to fill up ({done.stderr.strip() or 'not root'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
        shutil.rmtree(mount_point, ignore_errors=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler
