"""Which connection a store call runs on, and the one transaction around it.

An explicit ``session`` wins (it is the caller's: writes are committed, reads leave it as it
was); else the process-global session from ``set_global_session`` (committed either way, so it
never idles inside a transaction); else a connection of the store's own engine, one
transaction. The store speaks Core SQL on the session's connection: no ORM bookkeeping per call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from agentexec_sqlalchemy.activity import session as global_session
from agentexec_sqlalchemy.errors import explain_missing_tables


class UnitOfWork:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: an in-memory SQLite database: one shared connection, invisible to other processes
        self.in_memory = engine.dialect.name == "sqlite" and engine.url.database in (
            None, "", ":memory:",
        )
        # one call at a time on that single connection
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if self.in_memory else nullcontext()
        )

    def engine_for_background(self) -> Engine:
        """The engine for calls that never see a caller's session (the async twins)."""
        return global_session.global_engine() or self.engine

    @contextmanager
    def __call__(self, session: Session | None = None, *, write: bool) -> Iterator[Connection]:
        if session is None and global_session.global_engine() is not None:
            session, write = global_session.get_global_session(), True
        if session is None:
            with self.own(write=write) as conn:
                yield conn
            return
        with self._serial:
            try:
                with explain_missing_tables(session.get_bind().engine):
                    yield session.connection()
                    if write:
                        session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def own(self, engine: Engine | None = None, *, write: bool = True) -> Iterator[Connection]:
        """A connection of its own (``engine`` or the store's): one transaction for a write; for
        a read (one statement, consistent by itself) autocommit, which saves the BEGIN and
        COMMIT round trips."""
        engine = engine or self.engine
        with self._serial, explain_missing_tables(engine):
            if write:
                with engine.begin() as conn:
                    yield conn
            else:
                with engine.connect() as conn:
                    yield conn.execution_options(isolation_level="AUTOCOMMIT")
