"""The program :class:`agentexec.testing.PoolSuite` runs: a real ``ax.Pool`` on the backends the
environment selects (``AGENTEXEC_*``), in its own process, as a user runs one.

``python -m agentexec.testing._pool_app``. It is its own producer, so in-process backends work
too: it enqueues the tasks of ``AXKIT_PLAN`` (a JSON list of ``{"label", "priority",
"seconds"}``) on queue ``AXKIT_QUEUE`` before the workers start, waits for their results on a
thread, and on SIGTERM/SIGINT shuts the pool down gracefully and writes a summary. Everything it
observes goes to the journal ``AXKIT_JOURNAL``, one JSON object a line (``O_APPEND`` writes:
workers in other processes never interleave).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any
from uuid import UUID

import anyio
from pydantic import BaseModel

import agentexec as ax
from agentexec.task import Priority

JOURNAL = os.environ.get("AXKIT_JOURNAL", "axkit-journal.jsonl")


class KitJob(BaseModel):
    label: str
    #: how long the first run sleeps; a second run of the same task (after its worker was
    #: killed) does not sleep
    seconds: float = 0.0


def note(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields})
    with open(JOURNAL, "a") as f:
        f.write(line + "\n")


def _started_before(agent_id: UUID) -> bool:
    try:
        with open(JOURNAL) as f:
            # a line without its newline is one another process is still writing
            events = [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return False
    return any(e["event"] == "start" and e.get("agent_id") == str(agent_id) for e in events)


pool = ax.Pool(queue_name=os.environ.get("AXKIT_QUEUE", "axkit_pool"))


@pool.task("axkit_job")
async def axkit_job(agent_id: UUID, context: KitJob) -> str:
    first = not _started_before(agent_id)
    note("start", agent_id=str(agent_id), label=context.label)
    if first and context.seconds:
        await anyio.sleep(context.seconds)
    note("end", agent_id=str(agent_id), label=context.label)
    return context.label


def main() -> None:
    plan = json.loads(os.environ.get("AXKIT_PLAN", "[]"))
    wait = float(os.environ.get("AXKIT_WAIT", "30"))
    ensure = getattr(pool.backends.activity, "ensure_schema", None)
    if callable(ensure):
        ensure()

    async def enqueue() -> list[Any]:
        tasks = []
        for item in plan:
            priority = Priority.HIGH if item.get("priority") == "high" else Priority.LOW
            job = KitJob(label=item["label"], seconds=item.get("seconds", 0.0))
            task = await ax.enqueue("axkit_job", job, priority=priority, queue_name=pool.queue_name)
            note("enqueued", agent_id=str(task.agent_id), label=job.label)
            tasks.append(task)
        return tasks

    tasks = anyio.run(enqueue)

    async def results() -> None:
        for task in tasks:
            try:
                value = await ax.get_result(task, timeout=wait)
            except Exception as exc:  # reported, the test decides
                note("no_result", agent_id=str(task.agent_id), error=repr(exc))
                continue
            note("result", agent_id=str(task.agent_id), value=value)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    pool.start()
    note("started", cross_process=pool.backends.cross_process)
    threading.Thread(target=anyio.run, args=(results,), daemon=True).start()
    while not stop.wait(0.05):
        pass
    note("stopping")
    pool.shutdown()

    async def summary() -> None:
        statuses = {}
        for task in tasks:
            detail = await ax.activity.adetail(task.agent_id)
            statuses[str(task.agent_id)] = detail.status.value if detail else None
        waiting = await pool.backends.queue.length(pool.queue_name)
        note("summary", statuses=statuses, waiting=waiting)

    anyio.run(summary)


if __name__ == "__main__":
    main()
