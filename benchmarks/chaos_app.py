"""The pool ``chaos.py`` runs and kills: one task, ``job``, that sleeps and journals its start
and end (with its worker's pid) to ``CHAOS_JOURNAL``. Configured through the environment."""

from __future__ import annotations

import json
import os
import time
from uuid import UUID

import agentexec as ax
import anyio
from pydantic import BaseModel
from sqlalchemy import create_engine

DATABASE_URL = os.environ["AGENTEXEC_DATABASE_URL"]
JOURNAL = os.environ["CHAOS_JOURNAL"]

engine = create_engine(DATABASE_URL)
ax.Base.metadata.create_all(engine)
pool = ax.Pool(engine=engine, database_url=DATABASE_URL, queue_name=os.environ["CHAOS_QUEUE"])


class Job(BaseModel):
    label: str = ""
    seconds: float = 0.0


def note(event: str, label: str) -> None:
    line = json.dumps({"event": event, "label": label, "pid": os.getpid(), "t": time.time()})
    with open(JOURNAL, "a") as f:  # one short O_APPEND write per line: lines never interleave
        f.write(line + "\n")


@pool.task("job")
async def job(agent_id: UUID, context: Job) -> str:
    note("start", context.label)
    await anyio.sleep(context.seconds)
    note("end", context.label)
    return context.label


if __name__ == "__main__":
    pool.run()
