"""The transport's writes of one process and database: one writer thread, batched transactions.

Every write operation (lease, ack, result, push, publish …) from any thread or event loop is
queued to the writer thread of the process and database, which runs whatever has queued up in
ONE transaction on its own connection, then resolves each caller's future:

- 500 tasks finishing together cost a handful of commits, not 1,500, and no worker thread or
  pooled connection per write (a lease does not queue behind a pool of busy connections);
- SQLite has one writer at a time. When two threads of a process collide, the loser waits in
  SQLite's busy handler, which *sleeps* 1, 2, 5, 10 … ms between retries; one writer thread
  avoids that inside the transport, and every batch takes the file's
  :func:`~agentexec_sqlalchemy.transport.sqlite_lock.writer_lock` so other writers queue instead;
- PostgreSQL: a batch whose operations are all *relaxed* (see ``SQLTransport.write``) commits
  without waiting for the WAL flush; one durable operation makes the whole batch durable.

A worker's takes (``submit(..., first=True)``) do not wait for the rest of their batch: they
run and commit in a transaction of their own ahead of it, and their callers hear at once. A
worker's slots stand idle while a take is on its way, and most of a batch is finishes nobody
waits on (measured on SQLite, ``benchmarks/cli_pool.py --hook``, defaults: a take's wait
3.3-3.8 -> 2.4-3.2 ms, and 5 of 5 one-process drains faster, by 7-26 %).

If one operation fails, the batch is rolled back and its operations run again one per
transaction, so only the faulty one fails (its caller gets the exception). When the database
cannot write at all (unreachable, restarting, its disk full), the whole batch fails at once and
the connection is replaced, so the writer recovers by itself once the fault clears.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from agentexec_sqlalchemy import driver
from agentexec_sqlalchemy.errors import is_transient
from agentexec_sqlalchemy.transport.sqlite_lock import database_key, writer_lock

#: operations per transaction at most (each is one or two statements of some tens of µs)
MAX_BATCH = 200
#: seconds :meth:`BatchWriter.foreign_version` waits for a running batch
VERSION_WAIT = 0.01
#: retries of a transaction that still finds the file locked after busy_timeout
LOCKED_RETRIES = 5

_writers: dict[str, BatchWriter] = {}
_registry_lock = threading.Lock()


def is_locked_error(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text


@dataclass
class _Op:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    durable: bool
    done: Callable[[bool, Any], None]
    first: bool = False


class BatchWriter:
    """One thread running queued write operations ``fn(conn, *args)`` in batched transactions."""

    def __init__(self, engine: Engine, key: str) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._lock = writer_lock(engine, key) if self._sqlite else None
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        #: the writer thread's connection, held by it for each batch (see :meth:`foreign_version`)
        self._conn: Connection | None = None
        self._conn_lock = threading.Lock()
        # one thread also on PostgreSQL: measured, several writers side by side move fewer
        # tasks per second than one writing bigger batches (fewer commits, less GIL traffic)
        threading.Thread(target=self._run, name=f"agentexec-write-{key}", daemon=True).start()

    def submit(
        self, fn: Callable[..., Any], *args: Any, durable: bool = True, first: bool = False
    ) -> asyncio.Future[Any]:
        """Queue ``fn(conn, *args)``; the future (of the running loop) gets its return value.
        ``first``: a take, which a worker's free slots wait on: it runs and commits ahead of the
        rest of its batch, and its caller hears at once (see :meth:`_run`)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Op(fn, args, durable, _Settle(loop, fut), first))
        return fut

    def call(self, fn: Callable[..., Any], *args: Any, durable: bool = True) -> Any:
        """Queue ``fn(conn, *args)`` and block until it ran (for sync callers)."""
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def done(ok: bool, value: Any) -> None:
            if ok:
                result.set_result(value)
            else:
                result.set_exception(value)

        self._queue.put(_Op(fn, args, durable, done))
        return result.result()

    def foreign_version(self) -> tuple[Connection, Any] | None:
        """SQLite: ``PRAGMA data_version`` of the writer's connection, with the connection (a new
        one is a change), once the batch it runs (if any) is over; ``None`` before it has one,
        while a batch runs on past ``VERSION_WAIT``, or when the connection fails.

        It moves only when *another* connection commits: another process, or another connection
        of this one. The process's poller watches it rather than its own connection's, which
        moved after every commit of this writer too and cost a poll each (measured: ~7-11 % of
        a busy one-process SQLite worker), though a commit of this process has already woken
        its waiters here (``wake_local``)."""
        # a batch waiting for another process's turn on the file may take long: then None
        if not self._conn_lock.acquire(timeout=VERSION_WAIT):
            return None
        try:
            conn = self._conn
            if conn is None or conn.invalidated or conn.closed:
                return None
            return conn, driver.raw(conn).execute("PRAGMA data_version").fetchone()
        except Exception:  # the poller falls back to its own connection, which reports the error
            return None
        finally:
            self._conn_lock.release()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._conn_lock:
                self._serve(batch)

    def _serve(self, batch: list[_Op]) -> None:
        try:
            if self._conn is None:
                self._conn = self._connect()
        except Exception as exc:  # could not even connect: fail this batch, keep serving
            for op in batch:
                op.done(False, exc)
            return
        takes = [op for op in batch if op.first]
        if takes and len(takes) < len(batch):
            # free slots wait on the takes; nothing waits on the finishes queued with them
            self._conn = self._run_batch(self._conn, takes)
            batch = [op for op in batch if not op.first]
        self._conn = self._run_batch(self._conn, batch)

    def _connect(self) -> Connection:
        conn = self._engine.connect()
        if self._sqlite:
            # a savepoint inside a batch (the activity store's writes take one each) keeps the
            # pages it changes in a statement journal: in memory, not a temporary file that
            # spills past 64 KiB (measured: +70 % bytes written, +25 % CPU per line)
            driver.raw(conn).execute("PRAGMA temp_store=MEMORY")  # on the driver: no transaction
        else:
            # this connection is the writer's alone: relaxed commits by default, and a durable
            # batch switches its own transaction back (SET LOCAL), saving a round trip per batch
            conn.exec_driver_sql("SET synchronous_commit TO OFF")
            conn.commit()
        return conn

    def _run_batch(self, conn: Connection | None, batch: list[_Op]) -> Connection | None:
        """Run ``batch`` in one transaction; returns the connection for the next one (``None``:
        open a new one). When the batch fails, the connection is rolled back or replaced (a
        failed commit must not leave it unusable: SQLite's "disk is full" once made every later
        write of the process fail with ``PendingRollbackError``). An outage fails the whole
        batch (each caller waits it out); any other error runs the batch's operations again
        one per transaction, so only the faulty one fails."""
        try:
            if conn is None:
                conn = self._connect()
            results = self._transaction(conn, batch)
        except Exception as exc:
            conn = _reset(conn)
            if len(batch) == 1 or is_transient(exc):
                _resolve([(op, False, exc) for op in batch])
                return conn
            for op in batch:  # find the faulty one: each alone in its own transaction
                conn = self._run_batch(conn, [op])
            return conn
        _resolve([(op, True, value) for op, value in zip(batch, results, strict=True)])
        return conn

    def _transaction(self, conn: Connection, batch: list[_Op]) -> list[Any]:
        for attempt in range(LOCKED_RETRIES):
            try:
                with self._lock or contextlib.nullcontext():
                    try:
                        if self._sqlite:
                            conn.exec_driver_sql("BEGIN IMMEDIATE")
                        elif any(op.durable for op in batch):
                            conn.exec_driver_sql("SET LOCAL synchronous_commit TO ON")
                        results = [op.fn(conn, *op.args) for op in batch]
                        conn.commit()  # inside: a commit that fails is rolled back too
                    except BaseException:
                        with contextlib.suppress(Exception):
                            conn.rollback()
                        raise
                return results
            except sa.exc.OperationalError as exc:
                if not (self._sqlite and is_locked_error(exc)) or attempt == LOCKED_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")


def _reset(conn: Connection | None) -> Connection | None:
    """After a failed batch: ``conn`` once nothing of the batch's transaction is left on it,
    else ``None`` (invalidated: never back to the pool). The driver's own rollback goes last:
    a commit that failed inside the driver leaves a transaction SQLAlchemy no longer tracks
    (SQLite then refuses the next ``BEGIN IMMEDIATE``)."""
    if conn is None:
        return None
    try:
        if conn.closed or conn.invalidated:
            raise RuntimeError("connection lost")
        if conn.in_transaction():
            conn.rollback()
        driver = conn.connection.dbapi_connection
        if driver is None:
            raise RuntimeError("no driver connection")
        driver.rollback()
        return conn
    except Exception:
        with contextlib.suppress(Exception):
            conn.invalidate()
        with contextlib.suppress(Exception):
            conn.close()
        return None


class _Settle:
    """Resolves a future of an event loop from the writer thread (the ``done`` of an async
    caller's operation); :func:`_resolve` wakes each loop once per batch."""

    __slots__ = ("fut", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any]) -> None:
        self.loop, self.fut = loop, fut

    def __call__(self, ok: bool, value: Any) -> None:
        self._on_loop([(self.fut, ok, value)])

    def _on_loop(self, settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        try:
            self.loop.call_soon_threadsafe(_settle_all, settled)
        except RuntimeError:  # the caller's event loop is closed: nobody to tell
            pass


def _resolve(done: list[tuple[_Op, bool, Any]]) -> None:
    """Hand each operation of a batch its outcome: the futures of one event loop in ONE
    ``call_soon_threadsafe`` (each call writes to the loop's self-pipe: measured ~12 % of a
    SQLite worker's samples when it was one call per operation)."""
    per_loop: dict[asyncio.AbstractEventLoop, tuple[_Settle, list[tuple[asyncio.Future[Any], bool, Any]]]] = {}
    for op, ok, value in done:
        if isinstance(op.done, _Settle):
            per_loop.setdefault(op.done.loop, (op.done, []))[1].append((op.done.fut, ok, value))
        else:
            op.done(ok, value)
    for first, settled in per_loop.values():
        first._on_loop(settled)


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in settled:
        if fut.done():  # the caller was cancelled; the write happened anyway
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def existing_writer(key: str) -> BatchWriter | None:
    """The process's writer of database ``key`` if it has started one."""
    return _writers.get(key)


def get_writer(engine: Engine) -> BatchWriter:
    """The process's writer of the database of ``engine`` (started on first use)."""
    key = database_key(engine)
    writer = _writers.get(key)
    if writer is None:
        with _registry_lock:
            writer = _writers.get(key)
            if writer is None:
                writer = _writers[key] = BatchWriter(engine, key)
    return writer


def _after_fork() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # another thread may have held it at the fork
    _writers.clear()  # their threads did not survive the fork


os.register_at_fork(after_in_child=_after_fork)
