"""The scheduler document's synchronous task functions, on agentexec.

The scheduler spec's task functions are plain ``def`` functions (``process_pending_emails_task``
and ``generate_report_task``, scheduled from a ``tasks.yaml``) that log, publish an event and
return a dict. Here they are ``@pool.task`` handlers: agentexec runs a sync handler in a worker
thread, so it may block; ``ax.activity.update`` and ``ax.events.publish_sync`` are its sync
calls. The schedules come from ``examples/tasks.yaml``.

In production, run the pool with its schedules (every pool runs the scheduler; each tick is
enqueued exactly once)::

    agentexec run examples/sync_schedules.py:pool --schedules examples/tasks.yaml

``python examples/sync_schedules.py`` is a demo on the embedded default (``agentexec.db`` in the
working directory, or the servers ``AGENTEXEC_*`` names): it starts the pool,
listens for the events (synchronously, like the spec's ``event_bus.listen(timeout=1.0)``), runs
each task once and prints what came back.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from uuid import UUID

import agentexec as ax
import anyio
from pydantic import BaseModel

log = logging.getLogger("app.services")
SCHEDULES = Path(__file__).with_name("tasks.yaml")

pool = ax.Pool()


class EmailBatch(BaseModel):
    batch_size: int = 10


class ReportRequest(BaseModel):
    recipients: list[str] = ["ops@example.com"]


@pool.task("process_emails")
def process_pending_emails_task(agent_id: UUID, context: EmailBatch) -> dict[str, object]:
    """Scheduled task function (synchronous: it runs in a worker thread)."""
    log.info("Processing %d pending emails", context.batch_size)
    ax.activity.update(agent_id, f"Processing {context.batch_size} emails", percentage=50)
    # ... your task logic here ...
    ax.events.publish_sync(
        "email.batch_processed", {"batch_size": context.batch_size}, source="email-agent"
    )
    return {"status": "success", "processed": context.batch_size}


@pool.task("generate_report")
def generate_report_task(agent_id: UUID, context: ReportRequest) -> dict[str, object]:
    ax.activity.update(agent_id, "Rendering the report", percentage=30)
    ax.events.publish_sync("report.generated", {"recipients": context.recipients}, source="reports")
    return {"status": "success", "sent_to": context.recipients}


async def run_each_task_once() -> list[object]:
    emails = await ax.enqueue(process_pending_emails_task, EmailBatch(batch_size=25))
    report = await ax.enqueue(generate_report_task, ReportRequest())
    return list(await ax.gather(emails, report, timeout=60))


def main() -> int:
    ax.CONF.num_workers = 1
    pool.load_schedules(SCHEDULES)  # validated now; they fire on their own schedule
    pool.start()
    try:
        with ax.events.listen("email.*", "report.*") as events:  # listening before anything runs
            results = anyio.run(run_each_task_once)
            received = [events.get(timeout=10) for _ in range(2)]
    finally:
        pool.shutdown(timeout=30)
    for event in received:
        if event is None:
            print("an event did not arrive")
            return 1
        print(f"event {event.event_type} from {event.source}: {event.payload}")
    for result in results:
        print(f"result: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
