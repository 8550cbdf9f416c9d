"""agentexec's control plane for FastAPI.

::

    from fastapi import FastAPI
    import agentexec_fastapi

    app = FastAPI(lifespan=agentexec_fastapi.lifespan)
    app.include_router(agentexec_fastapi.router(pool), prefix="/api/agentexec")

or a ready app: ``app = agentexec_fastapi.create_app(pool)``. See docs/http-api.md.
"""

from agentexec_fastapi._api import create_app, feed_of, lifespan, router
from agentexec_fastapi._feed import ActivityFeed, FeedUnavailableError

__all__ = ["ActivityFeed", "FeedUnavailableError", "create_app", "feed_of", "lifespan", "router"]
