"""agentexec's control plane for FastAPI.

::

    from fastapi import FastAPI
    import agentexec_fastapi

    app = FastAPI(lifespan=agentexec_fastapi.lifespan)
    app.include_router(agentexec_fastapi.router(pool), prefix="/api/agentexec")

or a ready app: ``app = agentexec_fastapi.create_app(pool)``. See docs/http-api.md.

Names are imported on first use, so discovering the plugin (``agentexec_fastapi._plugin``)
imports no web framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentexec_fastapi._api import create_app, feed_of, lifespan, router
    from agentexec_fastapi._feed import ActivityFeed, FeedUnavailableError

__all__ = ["ActivityFeed", "FeedUnavailableError", "create_app", "feed_of", "lifespan", "router"]

_WHERE = {
    "create_app": "_api", "feed_of": "_api", "lifespan": "_api", "router": "_api",
    "ActivityFeed": "_feed", "FeedUnavailableError": "_feed",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agentexec_fastapi' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"agentexec_fastapi.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
