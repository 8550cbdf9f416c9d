"""A pool for ``tests/test_schedule_pools.py``: its schedules come from ``--schedules FILE``."""

from __future__ import annotations

import os
from uuid import UUID

import agentexec as ax
from agentexec_sqlalchemy.engine import get_engine
from pydantic import BaseModel

pool = ax.Pool(engine=get_engine(os.environ["AGENTEXEC_DATABASE_URL"]))


class Tick(BaseModel):
    label: str


@pool.task("tick")
async def tick(agent_id: UUID, context: Tick) -> str:
    return context.label
