"""The pool and the web app the control-plane tests run as real programs: ``python cp_app.py``
runs the pool, ``uvicorn cp_app:app`` serves the API. Configured by ``AGENTEXEC_*`` and
``CP_QUEUE``."""

from __future__ import annotations

import os
import time
from typing import Any
from uuid import UUID

import agentexec as ax
import agentexec_fastapi
import anyio
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

pool = ax.Pool(queue_name=os.environ.get("CP_QUEUE", "cp"))


class Steps(BaseModel):
    steps: int = 5
    delay: float = 0.1


class Fail(BaseModel):
    message: str = "boom"


@pool.task("steps")
async def steps(agent_id: UUID, context: Steps) -> dict[str, Any]:
    for i in range(context.steps):
        # the wall clock in the message: the stream test measures delivery from it
        await ax.activity.aupdate(
            agent_id, f"step {i + 1} at {time.time():.6f}", percentage=(i + 1) * 100 // context.steps
        )
        await anyio.sleep(context.delay)
    return {"done": context.steps}


@pool.task("fail")
async def fail(agent_id: UUID, context: Fail) -> None:
    raise RuntimeError(context.message)


def tenant(x_tenant: str = Header(...)) -> dict[str, Any]:
    """The tests' tenancy: a request says its tenant in a header (a real app reads its session
    or token), and sees only that tenant's activities."""
    if not x_tenant.isalnum():
        raise HTTPException(401, "X-Tenant must name a tenant")
    return {"tenant": x_tenant}


main = agentexec_fastapi.router(pool)
scoped = agentexec_fastapi.router(pool, scope=tenant, dashboard=False)
app = FastAPI(lifespan=agentexec_fastapi.lifespan)
app.include_router(main, prefix="/api/agentexec")
app.include_router(scoped, prefix="/tenant")

if __name__ == "__main__":
    pool.run()
