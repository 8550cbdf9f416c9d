"""Engines for agentexec's SQL backends: one per URL per process, SQLite tuned for concurrency."""

from __future__ import annotations

import os
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

_lock = threading.Lock()
_engines: dict[str, tuple[int, Engine]] = {}


#: async drivers (what an ``AsyncEngine`` or a URL written for one names) -> the sync driver
#: agentexec's stores run on, for the same database
SYNC_DRIVERS = {
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "sqlite+aiosqlite": "sqlite",
}


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` use psycopg 3 (sync and async from one driver); a URL
    naming an async driver (``postgresql+asyncpg://``, ``sqlite+aiosqlite://``) gets the sync
    driver of the same database."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    scheme, sep, rest = url.partition("://")
    if sep and scheme in SYNC_DRIVERS:
        return f"{SYNC_DRIVERS[scheme]}://{rest}"
    return url


def sync_source(source: Any) -> Any:
    """``source`` as something :func:`get_engine` takes: an ``AsyncEngine`` (the original
    agentexec 0.2+ takes one) becomes its URL, which :func:`normalize_url` points at the sync
    driver; anything else is returned as it is."""
    sync_engine = getattr(source, "sync_engine", None)
    if isinstance(sync_engine, Engine):
        return str(sync_engine.url.render_as_string(hide_password=False))
    return source


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue instead of fail
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_engine(url: str, **kwargs: Any) -> Engine:
    """A new engine for ``url`` with agentexec's settings (prefer :func:`get_engine`)."""
    url = normalize_url(url)
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        if memory:
            kwargs.setdefault("poolclass", StaticPool)
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # let SQLAlchemy's own BEGIN reach SQLite so "BEGIN IMMEDIATE" can be issued by writers
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def get_engine(source: Any) -> Engine:
    """The process's engine for a URL (an Engine passes through). After ``fork`` the child gets
    a fresh pool instead of sharing the parent's sockets."""
    if isinstance(source, Engine):
        return source
    key = normalize_url(sync_source(source))
    pid = os.getpid()
    with _lock:
        cached = _engines.get(key)
        if cached is not None and cached[0] == pid:
            return cached[1]
        if cached is not None:
            cached[1].dispose(close=False)
        engine = create_engine(key)
        _engines[key] = (pid, engine)
        return engine


def dispose_all() -> None:
    with _lock:
        for _, engine in _engines.values():
            engine.dispose()
        _engines.clear()
