"""The pool ``cli_pool.py`` starts the way a user does: ``agentexec run _cli_app:pool``.

Configured by ``AGENTEXEC_*`` only (set by ``cli_pool.py``); everything else is agentexec's
default, logging included (``agentexec run`` turns INFO console logging on).
"""

from __future__ import annotations

import time
from uuid import UUID

import agentexec as ax
import anyio
from pydantic import BaseModel

pool = ax.Pool()


class Job(BaseModel):
    sleep: float = 0.0
    sent: float = 0.0


@pool.task("noop")
async def noop(agent_id: UUID, context: Job) -> list[float]:
    """Returns [when it started, when it ended] (wall clock, comparable across processes)."""
    started = time.time()
    if context.sleep:
        await anyio.sleep(context.sleep)
    return [started, time.time()]
