"""The web app of the control-plane tests (``uvicorn cp_web:app``): the API of ``cp_app``'s
pool at ``/api/agentexec`` (with the dashboard), and again, confined to one tenant per request,
at ``/tenant``."""

from __future__ import annotations

from typing import Any

import agentexec_fastapi
from cp_app import pool
from fastapi import FastAPI, Header, HTTPException


def tenant(x_tenant: str = Header(...)) -> dict[str, Any]:
    """The tests' tenancy: a request says its tenant in a header (a real app reads its session
    or token), and sees only that tenant's activities."""
    if not x_tenant.isalnum():
        raise HTTPException(401, "X-Tenant must name a tenant")
    return {"tenant": x_tenant}


# short keep-alives: the tests cross many idle gaps of the stream, which must lose nothing
main = agentexec_fastapi.router(pool, keepalive=0.2)
scoped = agentexec_fastapi.router(pool, scope=tenant, dashboard=False, keepalive=0.2)
app = FastAPI(lifespan=agentexec_fastapi.lifespan)
app.include_router(main, prefix="/api/agentexec")
app.include_router(scoped, prefix="/tenant")
