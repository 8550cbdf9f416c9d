"""Which backends this process uses: explicit objects first, then CONF names/URLs, then defaults.

With nothing configured, agentexec runs on one SQLite file (``CONF.embedded_db_path``) for queue,
results, events and activity, and says so once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

from agentexec._redact import mask_url
from agentexec.backends import ActivityStore, EventBackend, QueueBackend, ResultBackend
from agentexec.config import CONF
from agentexec.plugins import BackendKind, get_registry

log = logging.getLogger("agentexec")


@dataclass(frozen=True)
class Backends:
    """The four backends one process talks to."""

    queue: QueueBackend
    results: ResultBackend
    events: EventBackend
    activity: ActivityStore
    #: False when any backend lives only inside this process (``memory://``)
    cross_process: bool = True
    #: the URLs (or names) they were built from, so worker processes can rebuild them
    urls: dict[str, str] | None = None

    def __repr__(self) -> str:
        urls = None if self.urls is None else {k: mask_url(v) for k, v in self.urls.items()}
        return (
            f"Backends(queue={self.queue!r}, results={self.results!r}, events={self.events!r}, "
            f"activity={self.activity!r}, cross_process={self.cross_process}, urls={urls!r})"
        )

    def with_(self, **changes: Any) -> Backends:
        return replace(self, **changes)

    async def aclose(self) -> None:
        for backend in (self.queue, self.results, self.events):
            await backend.close()
        await self.activity.aclose()


def embedded_url() -> str:
    return f"sqlite:///{CONF.embedded_db_path}"


_announced = False


def configured_urls(database_url: str | None = None) -> dict[BackendKind, str]:
    """The name or URL each kind of backend comes from, per CONF (and an explicit database URL)."""
    global _announced
    db = database_url or CONF.database_url
    transport = CONF.redis_url or db
    if transport is None or db is None:
        if not _announced:
            _announced = True
            # a warning so it shows with no logging configured: production should choose
            log.warning(
                "agentexec: no redis_url or database_url configured; using the embedded SQLite "
                "file %s for %s (set AGENTEXEC_REDIS_URL or AGENTEXEC_DATABASE_URL to choose)",
                CONF.embedded_db_path,
                "queue, results, events and activity" if transport is None and db is None else
                "activity" if db is None else "queue, results and events",
            )
        transport = transport or embedded_url()
        db = db or embedded_url()
    return {
        "queue": CONF.queue_backend or transport,
        "results": CONF.results_backend or transport,
        "events": CONF.events_backend or transport,
        "activity": CONF.activity_backend or db,
    }


def build_backends(
    urls: dict[BackendKind, str] | None = None,
    *,
    activity_source: Any = None,
    **explicit: Any,
) -> Backends:
    """Backends from explicit objects, else from ``urls`` (default: :func:`configured_urls`).

    ``activity_source`` (a SQLAlchemy engine, say) is handed to the activity store's factory
    instead of its URL.
    """
    urls = dict(urls or configured_urls())
    registry = get_registry()
    built: dict[str, Any] = {}
    cross = True
    for kind in ("queue", "results", "events", "activity"):
        obj = explicit.get(kind)
        if obj is None:
            spec = registry.find(kind, urls[kind])
            source: Any = urls[kind]
            if kind == "activity" and activity_source is not None:
                source = activity_source
            obj = spec.load()(source)
            cross = cross and spec.cross_process
            if source == embedded_url():
                # the embedded default needs no set-up step: it creates what it uses
                ensure = getattr(obj, "ensure_schema", None)
                if callable(ensure):
                    ensure()
        else:
            cross = cross and getattr(obj, "cross_process", True)
        built[kind] = obj
    if cross:
        _preload_event_loop_backend()
    return Backends(
        queue=built["queue"],
        results=built["results"],
        events=built["events"],
        activity=built["activity"],
        cross_process=cross,
        urls={k: v for k, v in urls.items()},
    )


def _preload_event_loop_backend() -> None:
    """Import anyio's asyncio backend now. Cross-process backends mean worker processes forked
    from this one, each running an event loop: imported here, before the fork, every worker
    has it for free instead of importing it on its first ``anyio.run`` (~50 ms each, more on a
    loaded machine, on the path to the first task)."""
    import importlib

    try:
        importlib.import_module("anyio._backends._asyncio")
    except ImportError:  # pragma: no cover - a future anyio that moves it: only slower
        pass


_lock = threading.Lock()
_current: Backends | None = None
#: who chose ``_current``: built from CONF on first use ("conf"), adopted by an ``ax.Pool``
#: ("pool"), or given to :func:`set_backends` ("user")
_source: str | None = None


def _stale(backends: Backends) -> bool:
    """Backends built from CONF whose URLs CONF no longer names (a test changed CONF, say)."""
    return _source == "conf" and backends.urls != configured_urls()


def get_backends() -> Backends:
    """The process's backends, built from CONF on first use (and again when CONF's URLs change)."""
    global _current, _source, _activity_store
    current = _current
    if current is None or _stale(current):
        with _lock:
            if _current is None or _stale(_current):
                # the replaced backends are not closed here (that needs their event loop)
                _current, _source, _activity_store = build_backends(), "conf", None
            current = _current
    return current


def set_backends(backends: Backends | None, *, explicit: bool = True) -> None:
    """Make ``backends`` this process's (``None`` forgets them; the next use rebuilds from CONF).

    ``explicit=False`` is for an ``ax.Pool`` adopting its backends as the process default: a
    later pool may replace them (each test of a suite builds its own pool on its own database),
    while backends the user set stay until the user changes them.
    """
    global _current, _activity_store, _source
    with _lock:
        _current = backends
        _activity_store = None
        _source = None if backends is None else "user" if explicit else "pool"


def has_backends() -> bool:
    return _current is not None


def has_explicit_backends() -> bool:
    """Whether this process's backends were set with :func:`set_backends` (not built from CONF on
    first use, nor adopted by an ``ax.Pool``), so a new ``ax.Pool`` leaves them alone."""
    return _current is not None and _source == "user"


_activity_store: Any = None
_activity_url: str | None = None


def get_activity_store() -> ActivityStore:
    """The activity store ``ax.activity`` uses: the process's backends' if built, else one from CONF
    (so a web process that only reads activity does not open a queue connection)."""
    global _activity_store, _activity_url
    current = _current
    if current is not None and not _stale(current):
        return current.activity
    url = configured_urls()["activity"]
    store = _activity_store
    if store is None or _activity_url != url:
        with _lock:
            if _activity_store is None or _activity_url != url:
                store = get_registry().find("activity", url).load()(url)
                if url == embedded_url() and callable(getattr(store, "ensure_schema", None)):
                    store.ensure_schema()
                _activity_store, _activity_url = store, url
            store = _activity_store
    result: ActivityStore = store
    return result
