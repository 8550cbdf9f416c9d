"""What the SQL queue, results and events share: engine, schema, transactions, waiting.

Async path: the process's *sync* engine (the one the activity store uses, from
:func:`agentexec_sqlalchemy.engine.get_engine`), off the event loop. Reads run in a worker thread
(``anyio.to_thread``); writes go to the process's batching writer thread (:mod:`.batching`),
which commits whatever has queued up in one transaction. Not async drivers: SQLite has no real
one (aiosqlite is a thread per connection anyway), an async psycopg connection belongs to one
event loop while a process here runs several, and one code path then serves both dialects.
Only the idle wait differs per dialect: PostgreSQL ``LISTEN/NOTIFY`` or one shared SQLite poll
per process (:mod:`.watch`), plus an in-process wake-up on both (:mod:`.notify`).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from agentexec_sqlalchemy import pg_async, schema_once
from agentexec_sqlalchemy.engine import get_engine, is_sqlite
from agentexec_sqlalchemy.errors import is_transient
from agentexec_sqlalchemy.transport.batching import get_writer
from agentexec_sqlalchemy.transport.models import TRANSPORT_TABLES
from agentexec_sqlalchemy.transport.notify import (
    HUB,
    SAFETY_RECHECK,
    channel,
    poll_delays,
    wait_woken,
)
from agentexec_sqlalchemy.transport.sqlite_lock import writer_lock
from agentexec_sqlalchemy.transport.statements import NOTIFY
from agentexec_sqlalchemy.transport.watch import Watcher, get_watcher

T = TypeVar("T")

def _committed(conn: Connection) -> Iterator[Connection]:
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


class SQLTransport:
    """Base of :class:`SQLQueue`, :class:`SQLResults` and :class:`SQLEvents`."""

    cross_process = True

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """:class:`agentexec.backends.TransientErrors`: the database unreachable or unable to
        write for now (a worker waits), as opposed to refusing the data."""
        return is_transient(exc)

    def __init__(self, url: str | Engine) -> None:
        self._source = url
        self._pid = os.getpid()
        self._engine: Engine = get_engine(url)
        self.url = url if isinstance(url, str) else self._engine.url.render_as_string()
        self.is_sqlite = is_sqlite(self._engine)
        #: names this database in the process-wide wake-up hub
        self.database = self._engine.url.render_as_string(hide_password=True)
        self._dialect = "sqlite" if self.is_sqlite else "postgresql"
        self._schema_key = schema_once.database_key(self._engine, "transport")
        #: PostgreSQL through psycopg: the hottest writes are one autocommit statement each on
        #: the caller's loop (:mod:`agentexec_sqlalchemy.pg_async`), not a writer transaction
        self._pg = (
            pg_async.shared(self._engine.url)
            if not self.is_sqlite and self._engine.dialect.driver == "psycopg" else None
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.database!r})"

    @property
    def engine(self) -> Engine:
        """The engine of *this* process: a forked worker inherits the backend object, but must
        not share the parent's pooled connections, so it gets its own."""
        if self._pid != os.getpid():
            if isinstance(self._source, Engine):
                self._source.dispose(close=False)  # drop the parent's connections, unclosed
            self._engine = get_engine(self._source)
            self._pid = os.getpid()
        return self._engine

    # -- schema --------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create the transport tables that are missing (once per database, for this process
        and the workers it forks: :mod:`.schema_once`).

        Concurrent first starts are serialised: an advisory lock on PostgreSQL, the write lock on
        SQLite (whose DDL is transactional), so two processes never race to create a table.
        """
        schema_once.once(self._schema_key, self._create_tables)
        self._in_memory_ready = True

    def _create_tables(self) -> None:
        with self.write() as conn:
            if not self.is_sqlite:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x61676578)))
            TRANSPORT_TABLES[0].metadata.create_all(conn, tables=list(TRANSPORT_TABLES))

    # -- running SQL ---------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` (reads: it opens its own connection) in a worker thread."""
        if not self.schema_ready:
            await anyio.to_thread.run_sync(self.ensure_schema)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args))

    async def pg_execute(self, statement: str, params: dict[str, Any], *, durable: bool = False) -> list[Any]:
        """PostgreSQL through psycopg: ``statement`` (psycopg's parameter style) as ONE autocommit
        statement on an async connection of the caller's loop (:mod:`agentexec_sqlalchemy.pg_async`;
        ``durable``: its commit waits for the WAL flush); its rows as named tuples. One round
        trip, where :meth:`run_write`'s transaction costs three or four and two thread hops.
        Like ``run_write``, once sent it is waited for even if the caller is cancelled; a driver
        error is raised as SQLAlchemy would raise it."""
        import psycopg

        from agentexec_sqlalchemy import driver

        assert self._pg is not None
        with anyio.CancelScope(shield=True):
            try:
                async with self._pg.connection(durable) as conn:
                    cursor = await conn.execute(statement, params)
                    rows = await cursor.fetchall() if driver.has_rows(cursor) else []
            except psycopg.Error as error:
                raise sa.exc.DBAPIError.instance(
                    statement, params, error, psycopg.Error, dialect=self.engine.dialect
                ) from error
        return driver.pg_rows(cursor, statement, rows)

    @property
    def pg_ready(self) -> bool:
        """Whether :meth:`pg_execute` may run now (PostgreSQL through psycopg, tables made)."""
        return self._pg is not None and self.schema_ready

    async def run_write(self, fn: Callable[..., T], *args: Any, durable: bool = True, first: bool = False) -> T:
        """``fn(conn, *args)`` inside a write transaction; returns what it returned, once committed.

        It runs on the process's batching writer thread (:mod:`.batching`), in one transaction
        with whatever other writes are queued. ``durable=False`` marks writes whose loss in a
        database *crash* only means a task runs again (see :meth:`write`); ``first`` a take,
        which runs ahead of the rest of its batch (see :mod:`.batching`).
        """
        if not self.schema_ready:
            await anyio.to_thread.run_sync(self.ensure_schema)
        fut = get_writer(self.engine).submit(fn, *args, durable=durable, first=first)
        # the write happens even if we are cancelled meanwhile: wait for it (milliseconds), so a
        # lease it took is handed to the caller rather than lost
        with anyio.CancelScope(shield=True):
            result: T = await fut
        return result

    def run_write_sync(self, fn: Callable[..., T], *args: Any, durable: bool = True) -> T:
        """:meth:`run_write` for sync callers (blocks)."""
        self.ensure_schema()
        result: T = get_writer(self.engine).call(fn, *args, durable=durable)
        return result

    #: an in-memory database (no key) whose tables this object created
    _in_memory_ready = False

    @property
    def schema_ready(self) -> bool:
        return schema_once.is_done(self._schema_key) or (self._schema_key is None and self._in_memory_ready)

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[Connection]:
        """One short write transaction. On SQLite it starts with ``BEGIN IMMEDIATE``: the write
        lock is taken up front, so a read-then-write never fails half-way with SQLITE_BUSY.

        ``durable=False`` is for writes whose loss in a database *crash* only means a task is
        delivered again (a lease, an ack, a heartbeat, a release): on PostgreSQL the commit then
        does not wait for the WAL flush (``synchronous_commit`` off for this transaction only),
        which is most of a commit's latency on a busy disk. Order is kept: a later durable commit
        (a result, a push) flushes these too. SQLite in WAL mode with ``synchronous=NORMAL``
        never waits for a sync at commit, so it changes nothing there.
        """
        if self.is_sqlite:
            with writer_lock(self.engine, self.database), self.engine.connect() as conn:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield from _committed(conn)
            return
        with self.engine.connect() as conn:
            if not durable:
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield from _committed(conn)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """For reads: autocommit, so PostgreSQL needs no BEGIN/ROLLBACK round trips."""
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def dialect_sql(self, statements: dict[str, Any]) -> Any:
        """This database's version of a dialect-specific statement from :mod:`._statements`."""
        return statements[self._dialect]

    def notify(self, conn: Connection, kind: str, name: str) -> None:
        """Inside a write transaction: wake other processes' waiters when it commits (PostgreSQL)."""
        if not self.is_sqlite:
            conn.execute(NOTIFY, self.note(kind, name))

    def note(self, kind: str, name: str) -> dict[str, str]:
        """Bind parameters of a NOTIFY built into a statement (see :mod:`._statements`)."""
        return {"channel": channel(kind), "note": name}

    def wake_local(self, kind: str, name: str) -> None:
        """After a commit: wake this process's waiters now."""
        HUB.wake((self.database, kind, name))

    # -- waiting -------------------------------------------------------------------------
    async def watcher(self, wait: float = 5.0) -> Watcher:
        """The process's watcher of this database, after waiting up to ``wait`` seconds for it to
        deliver wake-ups (a new PostgreSQL listener needs one round trip to LISTEN)."""
        watcher = get_watcher(self.engine, self.database)
        if not watcher.healthy and wait > 0:
            await anyio.to_thread.run_sync(watcher.wait_ready, wait)
        return watcher

    async def wait_for(
        self,
        kind: str,
        name: str,
        attempt: Callable[[], Awaitable[T | None]],
        timeout: float,
    ) -> T | None:
        """``await attempt()`` until it gives a value or ``timeout`` passes (then ``None``).

        Between attempts it sleeps until a wake-up for ``(kind, name)``: from a writer in this
        process, or from the watcher (a NOTIFY on PostgreSQL, the shared poll on SQLite). It
        re-checks every few seconds anyway, and polls on its own while the watcher is down.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        watcher = await self.watcher(min(5.0, timeout))
        key = (self.database, kind, name)
        delays = poll_delays()
        while True:
            if not watcher.healthy:  # stopped or reconnecting: a new one, or poll on our own
                watcher = await self.watcher(wait=0)
            fut = HUB.register(key)
            try:
                value = await attempt()
                if value is not None:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # only now that it waits (registered before the attempt, so nothing committed
                # since is missed): the SQLite poller looks at once whatever the version. A kick
                # before every attempt cost a busy worker a full poll, and a wake-up of its loop,
                # per take that found its tasks anyway
                watcher.kick()
                delay = SAFETY_RECHECK if watcher.healthy else next(delays)
                if await wait_woken(fut, min(remaining, delay)):
                    delays = poll_delays()
            finally:
                HUB.discard(key, fut)
