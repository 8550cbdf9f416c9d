"""A pool whose handlers do what a careless or hostile handler does (``python app_hostile.py``):
huge log lines, escape codes in activity messages, oversized results, memory it keeps.

Configured like ``app_pool.py``: ``AGENTEXEC_*``, ``E2E_QUEUE``, ``E2E_JOURNAL``.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import time
from uuid import UUID

import agentexec as ax
import anyio
from pydantic import BaseModel
from sqlalchemy import create_engine

faulthandler.register(signal.SIGUSR2, all_threads=True)
# every line says its level: the tests look for warnings
logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)

DATABASE_URL = os.environ["AGENTEXEC_DATABASE_URL"]
JOURNAL = os.environ["E2E_JOURNAL"]
#: what the terminal must never receive raw: clear screen, set the window title, bell
ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m"

engine = create_engine(DATABASE_URL)
ax.Base.metadata.create_all(engine)
pool = ax.Pool(engine=engine, database_url=DATABASE_URL, queue_name=os.environ["E2E_QUEUE"])
log = logging.getLogger("hostile")
#: what `hoard` keeps (a leak)
_hoard: list[bytes] = []


class Job(BaseModel):
    label: str = ""
    seconds: float = 0.0
    size: int = 0


def note(event: str, agent_id: UUID, label: str) -> None:
    line = json.dumps({
        "event": event, "agent_id": str(agent_id), "label": label, "pid": os.getpid(),
        "queue": pool.queue_name, "t": time.time(),
    })
    with open(JOURNAL, "a") as f:
        f.write(line + "\n")


@pool.task("job")
async def job(agent_id: UUID, context: Job) -> str:
    note("start", agent_id, context.label)
    if context.seconds:
        await anyio.sleep(context.seconds)
    note("end", agent_id, context.label)
    return context.label


@pool.task("shout")
async def shout(agent_id: UUID, context: Job) -> str:
    """Logs one line of ``size`` bytes."""
    note("start", agent_id, context.label)
    log.warning("%s", "x" * context.size)
    note("end", agent_id, context.label)
    return context.label


@pool.task("escape")
async def escape(agent_id: UUID, context: Job) -> str:
    """Escape codes in its activity message and its log line."""
    note("start", agent_id, context.label)
    await ax.activity.aupdate(agent_id, f"evil{ESCAPES}message", 50)
    log.warning("evil%slog", ESCAPES)
    note("end", agent_id, context.label)
    return context.label


@pool.task("bulky")
async def bulky(agent_id: UUID, context: Job) -> str:
    """Returns ``size`` characters."""
    note("start", agent_id, context.label)
    note("end", agent_id, context.label)
    return "r" * context.size


@pool.task("hoard")
async def hoard(agent_id: UUID, context: Job) -> str:
    """Keeps ``size`` MiB for as long as its worker lives."""
    note("start", agent_id, context.label)
    _hoard.append(os.urandom(context.size * 2**20))
    if context.seconds:
        await anyio.sleep(context.seconds)
    note("end", agent_id, context.label)
    return context.label


if __name__ == "__main__":
    pool.run()
