"""A producer process with metrics on (``AGENTEXEC_METRICS_DIR`` shared with the pool): enqueues
the jobs given as JSON on argv[1], waits for them, prints how many completed and failed."""

from __future__ import annotations

import json
import os
import sys

import agentexec as ax
import anyio
from pydantic import BaseModel


class Job(BaseModel):
    label: str = ""
    fail: bool = False
    die_once: bool = False


async def main() -> None:
    jobs = [Job(**item) for item in json.loads(sys.argv[1])]
    tasks = [await ax.enqueue("job", job, queue_name=os.environ["OBS_QUEUE"]) for job in jobs]
    completed = failed = 0
    with anyio.fail_after(90):
        for task in tasks:
            try:
                await ax.get_result(task, timeout=80)
                completed += 1
            except ax.TaskFailedError:
                failed += 1
    print(json.dumps({"completed": completed, "failed": failed}))


anyio.run(main)
