"""The pool ``cli_pool.py`` starts the way a user does: ``agentexec run _cli_app:pool``.

Configured by ``AGENTEXEC_*`` only (set by ``cli_pool.py``); everything else is agentexec's
default, logging included (``agentexec run`` turns INFO console logging on).
"""

from __future__ import annotations

import os
import time
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import anyio.lowlevel
from pydantic import BaseModel

pool = ax.Pool()
#: ``cli_pool.py --hook``: every task ends with an INCR on this Redis, as ../shared/bench's tasks
#: do: a handler that awaits a network round trip, as real ones do, where a no-op never yields
HOOK = os.environ.get("AXBENCH_HOOK_REDIS")
#: ``cli_pool.py --yield``: every task yields to the event loop once (a checkpoint)
YIELD = bool(os.environ.get("AXBENCH_YIELD"))
_hook: Any = None


class Job(BaseModel):
    sleep: float = 0.0
    sent: float = 0.0


@pool.task("noop")
async def noop(agent_id: UUID, context: Job) -> list[float]:
    """Returns [when it started, when it ended] (wall clock, comparable across processes)."""
    started = time.time()
    if context.sleep:
        await anyio.sleep(context.sleep)
    if YIELD:
        await anyio.lowlevel.checkpoint()
    if HOOK:
        global _hook
        if _hook is None:
            import redis.asyncio

            _hook = redis.asyncio.Redis.from_url(HOOK)
        await _hook.incr("axbench:done")
    return [started, time.time()]
