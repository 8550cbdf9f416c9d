"""One writer at a time per SQLite file within a process, queued instead of polled.

SQLite lets one connection write at a time. A connection that finds the file busy waits in
SQLite's busy handler, which *sleeps* 1, 2, 5, 10, 15, 20, 25 … ms between retries: threads of
one process colliding that way turn 50 µs writes into 5-30 ms ones. Writers that take
:func:`writer_lock` around their write transaction queue on a ``threading.Lock`` instead, handed
over the moment it is released. Other processes still meet the busy handler (measured: a
cross-process ``flock`` gained nothing there, the writes being short).
"""

from __future__ import annotations

import os
import threading

from sqlalchemy.engine import Engine

_locks: dict[str, threading.Lock] = {}
_registry = threading.Lock()


def database_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def writer_lock(engine_or_key: Engine | str) -> threading.Lock:
    """The process's write lock of one SQLite file: take it around every write transaction."""
    key = engine_or_key if isinstance(engine_or_key, str) else database_key(engine_or_key)
    lock = _locks.get(key)
    if lock is None:
        with _registry:
            lock = _locks.setdefault(key, threading.Lock())
    return lock


def _after_fork() -> None:
    global _registry
    _registry = threading.Lock()  # a lock held by another thread at the fork stays held forever
    _locks.clear()


os.register_at_fork(after_in_child=_after_fork)
