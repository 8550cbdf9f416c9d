"""One writer at a time per SQLite file, queued instead of left to SQLite's busy handler.

SQLite lets one connection write at a time. A connection that finds the file busy waits in
SQLite's busy handler, which *sleeps* 1, 2, 5, 10, 15, 20, 25 … ms between retries: writers
colliding that way turn sub-millisecond transactions into 5-30 ms ones. Writers that hold
:func:`writer_lock` around their write transaction queue instead, and are handed the turn the
moment it is released:

- threads of one process queue on a ``threading.Lock``;
- processes queue on an advisory lock (``flock``) of a file beside the database,
  ``<database>-lock``. Measured with two worker processes on one file
  (``benchmarks/cli_pool.py --stack sqlite --hook``, defaults, 2026-12-07): 600 busy-handler
  sleeps for 3,000 tasks without it (``benchmarks/syscalls.py --workers 2``), none with it, and
  a third fewer thread hand-offs (``futex``); the 2-process drain went from 1,365 / 1,580 /
  1,303 to 1,530 / 2,151 / 1,932 tasks/s in three interleaved pairs, and two processes now
  drain faster than one. Polling the file lock every 0.1-2 ms instead of waiting on it gained
  nothing measurable: the gain is the hand-over the moment the holder lets go.

A process that does not take the file lock (an older agentexec, the ``sqlite3`` shell) still
meets the busy handler, as before. ``flock`` belongs to an open file, so each process opens its
own (again after a fork: the inherited one shares the parent's lock), and the thread lock is
always taken first, so two threads of a process never hold it at once. A process that holds it
and is stopped (``SIGSTOP``, a frozen container) stops the other writers, as SQLite's own lock
would; they keep waiting and say so every ``FILE_LOCK_WARN`` seconds. A process that dies
releases it (the kernel does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from sqlalchemy.engine import Engine

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: threads queue, processes meet the busy handler
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("agentexec.sqlite")

#: seconds between the warnings of a writer still waiting for another process's turn
FILE_LOCK_WARN = 30.0


def database_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def lock_path(engine: Engine) -> str | None:
    """The file whose lock the writing processes of ``engine``'s database take; ``None`` for an
    in-memory database (no other process can open it) or a ``file:`` URI."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database) + "-lock"


class WriterLock:
    """The writers' turn on one SQLite file: first among this process's threads, then among
    its processes. A context manager; not re-entrant."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        #: the open file whose lock this process holds now (None: only the thread lock)
        self._held: int | None = None
        # a contended file lock is waited for by a helper thread, so the writer can say that it
        # still waits (a blocking flock cannot time out); ``_outcome``: whether it got the lock,
        # None while it waits
        self._turn = threading.Condition()
        self._wanted = False
        self._outcome: bool | None = None
        self._waiter: threading.Thread | None = None

    def __enter__(self) -> WriterLock:
        self._thread_lock.acquire()
        try:
            self._held = self._fd if self._lock_file() else None
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._held is not None:
                fcntl.flock(self._held, fcntl.LOCK_UN)
                self._held = None
        finally:
            self._thread_lock.release()

    def _lock_file(self) -> bool:
        fd = self._open()
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError:  # a file system without flock (ENOLCK): SQLite's own lock, from now on
            self.close()
            self.path = None
            return False
        waited = time.monotonic()
        with self._turn:
            if self._waiter is None:
                self._waiter = threading.Thread(target=self._wait_turns, args=(fd,), daemon=True,
                                                name=f"agentexec-sqlite-lock-{os.path.basename(self.path or '')}")
                self._waiter.start()
            self._outcome, self._wanted = None, True
            self._turn.notify_all()
            while self._outcome is None:
                if not self._turn.wait(FILE_LOCK_WARN):
                    log.warning(
                        "another process has held the write lock of %s for %.0f s; still waiting "
                        "(a stopped process holding it stops every writer until it resumes or exits)",
                        self.path, time.monotonic() - waited,
                    )
            return self._outcome

    def _wait_turns(self, fd: int) -> None:
        while True:
            with self._turn:
                while not self._wanted:
                    self._turn.wait()
                self._wanted = False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # the GIL is released while it blocks
                got = True
            except OSError:  # not expected (the file is ours): the writer goes on without it
                got = False
            with self._turn:
                self._outcome = got
                self._turn.notify_all()

    def _open(self) -> int | None:
        if self._fd is None and self.path is not None and fcntl is not None:
            try:
                # read-only is enough for flock: a lock file another user made still serves
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:  # a directory we cannot create files in: the database is no better
                self.path = None
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


_locks: dict[str, WriterLock] = {}
_registry = threading.Lock()


def writer_lock(engine: Engine, key: str | None = None) -> WriterLock:
    """The process's write lock of one SQLite file: hold it around every write transaction
    (``key``: ``database_key(engine)``, when the caller has it already)."""
    key = key or database_key(engine)
    lock = _locks.get(key)
    if lock is None:
        with _registry:
            lock = _locks.setdefault(key, WriterLock(lock_path(engine)))
    return lock


def _after_fork() -> None:
    global _registry
    _registry = threading.Lock()  # a lock held by another thread at the fork stays held forever
    for lock in _locks.values():
        lock.close()  # the inherited open file shares the parent's file lock: not ours
    _locks.clear()


os.register_at_fork(after_in_child=_after_fork)
