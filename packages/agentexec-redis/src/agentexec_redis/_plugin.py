"""Registers the Redis backends with agentexec. Imports nothing heavy: ``redis`` is imported by
the loaders, when agentexec selects one of these backends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentexec.hookspecs import BackendSpec, NameSpec, hookimpl

SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def _queue() -> Any:
    from agentexec_redis.queue import RedisQueue

    return RedisQueue


def _results() -> Any:
    from agentexec_redis.results import RedisResults

    return RedisResults


def _events() -> Any:
    from agentexec_redis.events import RedisEvents

    return RedisEvents


def _client(name: str) -> Any:
    def load() -> Any:
        from agentexec_redis import client

        return getattr(client, name)

    return load


@hookimpl
def agentexec_queue_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("redis", SCHEMES, _queue, "reliable priority queue on Redis lists")


@hookimpl
def agentexec_result_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("redis", SCHEMES, _results, "results with wake-up on Redis")


@hookimpl
def agentexec_event_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("redis", SCHEMES, _events, "events and worker logs on a Redis stream")


@hookimpl
def agentexec_names() -> Iterator[NameSpec]:
    yield NameSpec("agentexec", "close_redis", _client("close_redis"))
    for name in ("get_redis", "get_redis_sync", "close_redis"):
        yield NameSpec("agentexec.core.redis_client", name, _client(name))
