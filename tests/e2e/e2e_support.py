"""Helpers for the end-to-end pool tests: a running pool process, its output, its journal.

A pool under test runs in its own process tree exactly as a user runs one (``python app.py``
or ``agentexec run app:pool``). The test process is the producer: it talks to the same
backends through URLs, and reads a journal file the handlers append to (one JSON line per
event, with the pid of the worker that wrote it).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentexec.testing.process import ProgramProcess, children

HERE = Path(__file__).resolve().parent
APP = HERE / "app_pool.py"
#: every wait in these tests is bounded by this (seconds)
WAIT = 30.0


@dataclass
class Stack:
    """One backend configuration: what a pool process and the producer connect to."""

    name: str
    database_url: str
    redis_url: str | None

    def env(self) -> dict[str, str]:
        env = {"AGENTEXEC_DATABASE_URL": self.database_url}
        if self.redis_url:
            env["AGENTEXEC_REDIS_URL"] = self.redis_url
        return env

    def urls(self) -> dict[str, str]:
        transport = self.redis_url or self.database_url
        return {"queue": transport, "results": transport, "events": transport, "activity": self.database_url}


class PoolProcess(ProgramProcess):
    """A pool started in a subprocess; its combined output is collected as it comes."""

    def __init__(self, proc: subprocess.Popen[str], journal: Path) -> None:
        super().__init__(proc, WAIT)
        self.journal = journal

    @classmethod
    def start(  # type: ignore[override]
        cls,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        journal: Path,
        cwd: Path = HERE,
        wait_ready: bool = True,
    ) -> PoolProcess:
        proc = cls.popen(argv, {"E2E_JOURNAL": str(journal), **env}, cwd, preexec_fn=_die_with_the_test)
        pool = cls(proc, journal)
        if wait_ready:
            pool.wait_output("Pool started")
        return pool

    def dump_stacks(self) -> str:
        """Every thread's stack of the pool and its workers (app_pool registers SIGUSR2)."""
        for pid in [self.proc.pid, *children(self.proc.pid), *self.workers()]:
            try:
                os.kill(pid, signal.SIGUSR2)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
        return self.output

    def wait_event(self, event: str = "start", count: int = 1, timeout: float = WAIT) -> None:
        """Wait until the handlers journaled ``count`` ``event`` lines."""
        try:
            wait_until(lambda: sum(e["event"] == event for e in self.events()) >= count, timeout, event)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.dump_stacks()}") from None

    def workers(self) -> list[int]:
        """The worker processes (``agentexec:w<N>``): children of the pool's fork server, or of
        the pool process itself once their fork server died."""
        return self.named("w")

    def server(self) -> int:
        """The pool's fork server (``agentexec:fork``)."""
        found = self.servers()
        assert len(found) == 1, f"fork servers: {found}"
        return found[0]

    def servers(self) -> list[int]:
        """The pool's fork servers: children of the pool process named ``agentexec:fork`` (a
        worker or standby just forked bears its server's name for an instant: not a child)."""
        return [pid for pid in children(self.proc.pid) if process_name(pid) == "agentexec:fork"]

    def standby(self) -> int:
        """The fork server's standby (``agentexec:spare``)."""
        found = self.named("spare")
        assert len(found) == 1, f"standbys: {found}"
        return found[0]

    def named(self, role: str) -> list[int]:
        """The live pool processes named ``agentexec:<role>...`` (``w`` for workers)."""
        prefix = "agentexec:" + role
        return [pid for pid in descendants(self.proc.pid) if process_name(pid).startswith(prefix)]

    def events(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]


# looked up here, not in the forked child: preexec_fn must not import or dlopen (locks)
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_the_test() -> None:
    """In the pool process before exec: a test run that is itself killed takes it along."""
    if _prctl is not None:
        _prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid``, at any depth."""
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return sorted(found)


def process_parent(pid: int) -> int:
    """A live process's parent pid (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_name(pid: int) -> str:
    """A process's name (``comm``: pool processes are named ``agentexec:...``)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def python_app(*extra: str) -> list[str]:
    return [sys.executable, str(APP), *extra]


def agentexec_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "agentexec.cli", *args]
