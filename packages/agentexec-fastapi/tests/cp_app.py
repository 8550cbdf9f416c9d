"""The pool the control-plane tests run as a real program (``python cp_app.py``); its web app
is ``cp_web``. Configured by ``AGENTEXEC_*`` and ``CP_QUEUE``."""

from __future__ import annotations

import os
import time
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
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


if __name__ == "__main__":
    pool.run()
