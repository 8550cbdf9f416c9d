"""Registers the SQLAlchemy backends with agentexec. Imports nothing heavy: ``sqlalchemy`` is
imported by the loaders, when agentexec selects one of these backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from agentexec.hookspecs import BackendSpec, NameSpec, hookimpl

SCHEMES = ("sqlite", "postgresql", "postgres")


def _attr(module: str, name: str) -> Callable[[], Any]:
    def load() -> Any:
        import importlib

        return getattr(importlib.import_module(f"agentexec_sqlalchemy.{module}"), name)

    return load


@hookimpl
def agentexec_activity_stores() -> Iterator[BackendSpec]:
    yield BackendSpec("sqlalchemy", SCHEMES, _attr("activity.store", "SQLActivityStore"), "activity on SQL")


@hookimpl
def agentexec_queue_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("sqlalchemy", SCHEMES, _attr("transport.queue", "SQLQueue"), "embedded queue on SQL")


@hookimpl
def agentexec_result_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("sqlalchemy", SCHEMES, _attr("transport.results", "SQLResults"), "results on SQL")


@hookimpl
def agentexec_event_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("sqlalchemy", SCHEMES, _attr("transport.events", "SQLEvents"), "events on SQL")


@hookimpl
def agentexec_names() -> Iterator[NameSpec]:
    yield NameSpec("agentexec", "Base", _attr("activity.models", "Base"))
    for name in ("Activity", "ActivityLog", "Base"):
        yield NameSpec("agentexec.activity.models", name, _attr("activity.models", name))
    for name in ("set_global_session", "get_global_session", "remove_global_session"):
        yield NameSpec("agentexec.core.db", name, _attr("activity.session", name))
    # `agentexec db upgrade | downgrade | current | check`: the migrations' command
    yield NameSpec("agentexec.cli", "db", lambda: __import__("agentexec_sqlalchemy.cli", fromlist=["cli"]))
