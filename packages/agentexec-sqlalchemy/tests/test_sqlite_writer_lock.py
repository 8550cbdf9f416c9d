"""The SQLite writers' turn (:mod:`agentexec_sqlalchemy.transport.sqlite_lock`): processes queue
on a file lock beside the database, a forked child takes its own, and a long wait is reported."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from agentexec_sqlalchemy.engine import create_engine
from agentexec_sqlalchemy.transport import sqlite_lock
from agentexec_sqlalchemy.transport.sqlite_lock import lock_path, writer_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

# another process: waits for its turn, says when it got it, holds it for argv[2] seconds
TAKER = """
import sys, time
from agentexec_sqlalchemy.engine import create_engine
from agentexec_sqlalchemy.transport.sqlite_lock import writer_lock

lock = writer_lock(create_engine(sys.argv[1]))
print("waiting", flush=True)
with lock:
    print(f"got {time.time()}", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _taker(url: str, hold: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", TAKER, url, str(hold)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "waiting"
    return proc


def _got(proc: subprocess.Popen[str]) -> float:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("got "), line
    return float(line.split()[1])


def test_another_process_waits_for_the_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with writer_lock(create_engine(url)):
        proc = _taker(url, 0)
        time.sleep(0.5)  # the other process is waiting now, not writing
        released = time.time()
    try:
        assert _got(proc) >= released
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert Path(str(tmp_path / "q.db") + "-lock").exists()


def test_the_holder_waits_for_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    proc = _taker(url, 0.5)
    try:
        took = _got(proc)
        with writer_lock(create_engine(url)):
            assert time.time() >= took + 0.45
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def _fork_child_takes(url: str, out: multiprocessing.Queue[float]) -> None:
    with writer_lock(create_engine(url)):
        out.put(time.time())


def test_a_forked_child_takes_its_own_turn(tmp_path: Path) -> None:
    """The child inherits the parent's open lock file, whose flock the parent holds: were it
    used, the child would "hold" the lock at once, beside its parent."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    engine = create_engine(url)
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[float] = ctx.Queue()
    with writer_lock(engine):
        child = ctx.Process(target=_fork_child_takes, args=(url, out))
        child.start()
        time.sleep(0.5)
        released = time.time()
    try:
        assert out.get(timeout=10) >= released
        child.join(10)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()


def test_a_long_wait_is_reported_and_then_the_turn_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sqlite_lock, "FILE_LOCK_WARN", 0.2)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    proc = _taker(url, 1.0)
    try:
        _got(proc)
        with caplog.at_level(logging.WARNING, "agentexec.sqlite"), writer_lock(create_engine(url)):
            pass
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    warnings = [r.getMessage() for r in caplog.records if r.name == "agentexec.sqlite"]
    assert warnings, "no warning while waiting past FILE_LOCK_WARN"
    assert "another process has held the write lock of" in warnings[0]
    assert "still waiting" in warnings[0]


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = writer_lock(create_engine(f"sqlite:///{tmp_path / 'q.db'}"))
    inside, most = 0, 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(200):
            with lock:
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most == 1


def test_in_memory_databases_have_no_lock_file(tmp_path: Path) -> None:
    assert lock_path(sa.create_engine("sqlite://")) is None
    assert lock_path(sa.create_engine("sqlite:///:memory:")) is None
    assert lock_path(sa.create_engine(f"sqlite:///{tmp_path / 'q.db'}")) == os.path.abspath(tmp_path / "q.db") + "-lock"
    with writer_lock(sa.create_engine("sqlite://")):
        pass  # a thread lock only


def test_a_lock_file_that_cannot_be_made_leaves_sqlites_own_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory the process cannot create files in (then it cannot write the database either):
    the turn is the threads' only, and nothing fails."""
    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    lock = sqlite_lock.WriterLock(str(tmp_path / "q.db-lock"))
    monkeypatch.setattr(sqlite_lock.os, "open", refuse)
    with lock:
        pass
    assert lock.path is None
    assert not (tmp_path / "q.db-lock").exists()


def test_a_file_system_without_flock_leaves_sqlites_own_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = sqlite_lock.WriterLock(str(tmp_path / "q.db-lock"))

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(37, "No locks available")  # ENOLCK

    monkeypatch.setattr(sqlite_lock.fcntl, "flock", no_locks)
    with lock:
        pass
    with lock:  # and it does not try again
        pass
    assert lock.path is None
