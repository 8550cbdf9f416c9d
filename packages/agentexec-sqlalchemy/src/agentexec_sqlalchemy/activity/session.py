"""The process-global session (``agentexec.core.db``): what ``ax.activity`` uses without ``session=``.

``set_global_session(engine)`` binds it (workers do so at start); ``get_global_session()``
returns this thread's session; ``remove_global_session()`` closes it and returns its connection
to the pool (the next ``get_global_session()`` opens a fresh one on the same engine). The
binding is process-local: a forked child never reuses its parent's session or connections.
"""

from __future__ import annotations

import os
import threading

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from agentexec_sqlalchemy.engine import get_engine

_lock = threading.Lock()
_registry: scoped_session[Session] | None = None
_engine: Engine | None = None
_pid = 0


def set_global_session(engine: Engine | str) -> None:
    """Bind the process-global session to ``engine`` (an Engine, or a database URL)."""
    global _registry, _engine, _pid
    engine = get_engine(engine)
    with _lock:
        if _registry is not None and _pid == os.getpid():
            _registry.remove()
        _registry = scoped_session(sessionmaker(bind=engine))
        _engine, _pid = engine, os.getpid()


def _current() -> scoped_session[Session] | None:
    global _registry, _pid
    with _lock:
        if _registry is None or _engine is None:
            return None
        if _pid != os.getpid():
            # forked: the copied sessions and pooled sockets belong to the parent
            _engine.dispose(close=False)
            _registry = scoped_session(sessionmaker(bind=_engine))
            _pid = os.getpid()
        return _registry


def get_global_session() -> Session:
    """This thread's session on the engine given to :func:`set_global_session`."""
    registry = _current()
    if registry is None:
        raise RuntimeError(
            "no global session: call agentexec.core.db.set_global_session(engine) first "
            "(workers do this at start), or pass session= explicitly"
        )
    return registry()


def remove_global_session() -> None:
    """Close this thread's global session, returning its connection to the pool."""
    registry = _current()
    if registry is not None:
        registry.remove()


def global_engine() -> Engine | None:
    """The engine the global session is bound to, or ``None`` when it was never set."""
    return _engine if _current() is not None else None


def clear_global_session() -> None:
    """Close this thread's session and forget the binding (tests; reconfiguring a process)."""
    global _registry, _engine
    registry = _current()
    with _lock:
        if registry is not None:
            registry.remove()
        _registry, _engine = None, None
