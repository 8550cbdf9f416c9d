"""The process's watcher of each database: the thread that turns other processes' writes into
hub wake-ups (see :mod:`.notify`). One per process and database, started on first wait; a
forked child starts its own."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod

from sqlalchemy.engine import Engine


class Watcher(ABC):
    def __init__(self, database: str, name: str) -> None:
        self.database = database
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-{database}", daemon=True)
        self._thread.start()

    @property
    def healthy(self) -> bool:
        """Wake-ups flow: a waiter may sleep until one instead of polling on its own."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def kick(self) -> None:  # noqa: B027 (optional hook, most watchers ignore it)
        """A waiter registered (a poller that idles when nobody waits starts polling)."""

    def forget(self) -> None:
        with _lock:
            key = (os.getpid(), self.database)
            if _watchers.get(key) is self:
                del _watchers[key]

    @abstractmethod
    def _run(self) -> None: ...


_watchers: dict[tuple[int, str], Watcher] = {}
_lock = threading.Lock()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    _watchers.clear()  # their threads did not survive the fork


os.register_at_fork(after_in_child=_after_fork)


def get_watcher(engine: Engine, database: str) -> Watcher:
    key = (os.getpid(), database)
    with _lock:
        watcher = _watchers.get(key)
        if watcher is None:
            if engine.dialect.name == "sqlite":
                from agentexec_sqlalchemy.transport.watch_sqlite import SqlitePoller

                watcher = SqlitePoller(engine, database)
            else:
                from agentexec_sqlalchemy.transport.watch_pg import PgListener

                watcher = PgListener(engine.url, database)
            _watchers[key] = watcher
        return watcher
