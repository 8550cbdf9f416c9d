"""A pool for the operator-CLI tests (``tests/test_cli_ops.py``), run as ``agentexec run cli_ops_app:pool``.

Configured by the test through AGENTEXEC_* variables (Redis transport, SQLite activity file).
"""

from __future__ import annotations

import logging
import os
from uuid import UUID

import agentexec as ax
import anyio
from agentexec_sqlalchemy.engine import get_engine
from pydantic import BaseModel

engine = get_engine(os.environ["AGENTEXEC_DATABASE_URL"])
ax.Base.metadata.create_all(engine)
pool = ax.Pool(engine=engine)
log = logging.getLogger("cli_ops_app")


class Note(BaseModel):
    text: str = "hello"


class Fragile(BaseModel):
    #: the bug is "fixed" once this file exists; until then the task kills its worker
    fixed_flag: str


@pool.task("echo")
async def echo(agent_id: UUID, context: Note) -> str:
    await ax.activity.aupdate(agent_id, "Half way [step 1/2]", percentage=50)
    # a line of the handler's own: relayed to the main process, so ``agentexec tail`` sees it
    # (the per-task ``Processing task`` lines are printed by the worker itself)
    log.warning("echoing %s", context.text)
    return context.text.upper()


@pool.task("fragile")
async def fragile(agent_id: UUID, context: Fragile) -> str:
    if not await anyio.Path(context.fixed_flag).exists():
        os._exit(3)  # a crash that takes the worker process down with it
    return "recovered"


@pool.schedule("heartbeat", every="1 hour", context=Note(text="tick"))
async def heartbeat(agent_id: UUID, context: Note) -> None:
    return None


pool.add_schedule("echo", name="morning-echo", cron="0 9 * * 1-5", timezone="Europe/Paris",
                  context={"text": "good morning"}, repeat=3)
