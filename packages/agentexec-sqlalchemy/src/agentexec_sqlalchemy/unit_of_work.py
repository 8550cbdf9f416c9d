"""Which session a store call runs on, and the one transaction around it.

An explicit ``session`` wins (it is the caller's: writes are committed, reads leave it as it
was); else the process-global session from ``set_global_session`` (committed either way, so it
never idles inside a transaction); else a short-lived session of the store's own engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from agentexec_sqlalchemy import session as global_session
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
    def __call__(self, session: Session | None = None, *, write: bool) -> Iterator[Session]:
        if session is not None:
            with self._serial:
                yield from self._run(session, commit=write, close=False)
        elif global_session.global_engine() is not None:
            with self._serial:
                yield from self._run(global_session.get_global_session(), commit=True, close=False)
        else:
            with self.own(write=write) as own:
                yield own

    @contextmanager
    def own(self, *, write: bool, engine: Engine | None = None) -> Iterator[Session]:
        """A short-lived session of its own, one transaction."""
        with self._serial:
            yield from self._run(Session(engine or self.engine), commit=write, close=True)

    @staticmethod
    def _run(session: Session, *, commit: bool, close: bool) -> Iterator[Session]:
        try:
            with explain_missing_tables(session.get_bind().engine):
                yield session
                if commit:
                    session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            if close:
                session.close()
