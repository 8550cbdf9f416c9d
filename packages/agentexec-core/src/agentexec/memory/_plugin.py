"""Core's own plugin: the in-process ``memory://`` backends, registered like any other."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentexec.hookspecs import BackendSpec, hookimpl


def _queue() -> Any:
    from agentexec.memory.queue import MemoryQueue

    return _shared(MemoryQueue)


def _results() -> Any:
    from agentexec.memory.results import MemoryResults

    return _shared(MemoryResults)


def _events() -> Any:
    from agentexec.memory.events import MemoryEvents

    return _shared(MemoryEvents)


def _activity() -> Any:
    from agentexec.memory.activity import MemoryActivityStore

    return _shared(MemoryActivityStore)


_instances: dict[tuple[type[Any], str], Any] = {}


def _shared(cls: type[Any]) -> Any:
    """One instance per class and URL in this process, so a producer and in-process workers that
    both resolve ``memory://`` see the same data."""

    def factory(url: Any) -> Any:
        key = (cls, str(url))
        if key not in _instances:
            _instances[key] = cls(url)
        return _instances[key]

    return factory


_MEMORY = dict(schemes=("memory",), cross_process=False)


@hookimpl
def agentexec_queue_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(name="memory", load=_queue, description="in-process queue", **_MEMORY)  # type: ignore[arg-type]


@hookimpl
def agentexec_result_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(name="memory", load=_results, description="in-process results", **_MEMORY)  # type: ignore[arg-type]


@hookimpl
def agentexec_event_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(name="memory", load=_events, description="in-process events", **_MEMORY)  # type: ignore[arg-type]


@hookimpl
def agentexec_activity_stores() -> Iterator[BackendSpec]:
    yield BackendSpec(name="memory", load=_activity, description="in-process activity store", **_MEMORY)  # type: ignore[arg-type]
