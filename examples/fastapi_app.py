"""The scheduler document's app, rebuilt on agentexec: YAML schedules, events published when a
task completes (the task's own ``email.batch_processed``, and the pool's ``task.completed``)
and another component reacting to them, the HTTP API mounted under
``/api/scheduler`` and the dashboard at ``/api/scheduler/``.

    uv run examples/fastapi_app.py              # then open http://127.0.0.1:8000/api/scheduler/
    uv run examples/fastapi_app.py --check      # start, use the API once, check, stop

It runs on the embedded default (``agentexec.db`` in the working directory), or on the servers
``AGENTEXEC_*`` names. The pool starts in this process (its workers are processes of their
own) beside the web server; in production run them apart: ``agentexec run
examples/fastapi_app.py:pool --schedules examples/tasks.yaml`` and ``uvicorn
examples.fastapi_app:app``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import agentexec_fastapi
import anyio
from fastapi import FastAPI
from pydantic import BaseModel

log = logging.getLogger("app")
SCHEDULES = Path(__file__).with_name("tasks.yaml")

pool = ax.Pool()


class EmailBatch(BaseModel):
    batch_size: int = 10


class Report(BaseModel):
    title: str = "daily"


@pool.task("process_emails")
async def process_emails(agent_id: UUID, context: EmailBatch) -> dict[str, Any]:
    for done in range(1, context.batch_size + 1):
        await ax.activity.aupdate(agent_id, f"processed email {done}/{context.batch_size}",
                                  percentage=done * 100 // context.batch_size)
        await anyio.sleep(0.05)
    # the spec's event_bus.publish(event_type=..., source_agent=..., payload=...)
    await ax.events.publish("email.batch_processed", {"batch_size": context.batch_size},
                            source="email-agent")
    return {"status": "success", "processed": context.batch_size}


@pool.task("generate_report")
async def generate_report(agent_id: UUID, context: Report) -> dict[str, Any]:
    await ax.activity.aupdate(agent_id, f"writing the {context.title} report", percentage=50)
    return {"status": "success", "report": context.title}


pool.load_schedules(SCHEDULES)

#: what the other component saw (the --check run looks at it)
received: list[ax.events.BusEvent] = []


async def support_bot() -> None:
    """Another component, reacting to the email agent's events and to the pool's lifecycle
    events, ``task.completed`` / ``task.failed`` (the spec's ``event_bus.subscribe(
    agent_name="support-bot", event_type=..., callback=...)``)."""
    async with ax.events.subscribe("email.*", "task.completed", "task.failed") as events:
        async for event in events:
            log.warning("support-bot: %s from %s: %s", event.event_type, event.source, event.payload)
            received.append(event)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with agentexec_fastapi.lifespan(app), anyio.create_task_group() as tg:
        tg.start_soon(support_bot)
        yield
        tg.cancel_scope.cancel()


app = FastAPI(title="scheduler", lifespan=lifespan)
app.include_router(agentexec_fastapi.router(pool), prefix="/api/scheduler", tags=["scheduler"])


def check(url: str) -> None:
    """Use the API as a client would: the YAML schedules are listed, a task enqueued through it
    completes, and the other component hears of it."""
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        deadline = time.monotonic() + 30
        # the pool writes its YAML schedules to the backend when its scheduler starts
        while not {"process_pending_emails", "daily_report"} <= {
            s["name"] for s in client.get("/api/scheduler/schedules").json()
        }:
            assert time.monotonic() < deadline, "the YAML schedules are not listed"
            time.sleep(0.1)
        queued = client.post("/api/scheduler/tasks/process_emails", json={"context": {"batch_size": 3}})
        agent_id = queued.json()["agent_id"]
        result = client.get(f"/api/scheduler/results/{agent_id}", params={"wait": 30}).json()
        assert result["result"] == {"status": "success", "processed": 3}, result
        page = client.get("/api/scheduler/").text
        assert "agentexec" in page
    deadline = time.monotonic() + 30
    heard: list[str] = []
    while heard != ["email.batch_processed", "task.completed"]:
        assert time.monotonic() < deadline, f"the support bot heard only {heard}"
        time.sleep(0.05)
        heard = sorted({e.event_type for e in received if e.event_type.startswith("email.")} | {
            e.event_type for e in received
            if e.event_type == "task.completed" and e.payload.get("agent_id") == agent_id
        })
    print(f"ok: {agent_id} completed; the support bot heard {' and '.join(heard)}")


def main(argv: list[str]) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--check", action="store_true", help="start, use the API once, check, stop")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pool.start()  # first: its worker processes are forked before the server's threads exist
    try:
        server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=0 if args.check else args.port,
                                               log_level="warning"))
        if not args.check:
            print(f"dashboard: http://{args.host}:{args.port}/api/scheduler/  (Ctrl+C stops)")
            server.run()
            return 0
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            check(f"http://{args.host}:{port}")
        finally:
            server.should_exit = True
            thread.join(30)
        return 0
    finally:
        pool.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
