"""Which databases' agentexec tables this process has already checked (or created).

The embedded default creates what it uses, and each of its backends checks its tables when it
is built: the pool's process, its supervisor's own backends and every worker did it again, each
a write transaction of catalogue queries before the first task could start. The set survives
``fork()``: a worker forked from the pool that checked a database checks it no more.

A database is named by its URL, a SQLite file by its absolute path (the embedded default's
``sqlite:///agentexec.db`` is relative: another working directory is another database). An
in-memory SQLite database is never remembered: each engine has its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from sqlalchemy.engine import Engine

_lock = threading.Lock()
_done: set[str] = set()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork)


def database_key(engine: Engine, what: str) -> str | None:
    """The name of ``what`` (a set of tables) in ``engine``'s database; None when it cannot be
    told apart from another database of the same URL (in-memory SQLite)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        path = url.database
        if not path or path == ":memory:" or path.startswith("file:") or url.query.get("mode") == "memory":
            return None
        return f"{what} sqlite:{os.path.abspath(path)}"
    return f"{what} {url.render_as_string(hide_password=True)}"


def is_done(key: str | None) -> bool:
    return key is not None and key in _done


def once(key: str | None, ensure: Callable[[], None]) -> None:
    """Run ``ensure`` unless it has succeeded for ``key`` in this process or its forked parent."""
    if key is None:
        ensure()
        return
    if key in _done:
        return
    with _lock:
        if key in _done:
            return
        ensure()
        _done.add(key)
