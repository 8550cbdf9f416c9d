"""The main job: agentexec on its embedded default, with no server to start.

    uv run python examples/quickstart.py

With no AGENTEXEC_REDIS_URL or AGENTEXEC_DATABASE_URL configured, agentexec keeps its queue,
results, events and activity in one SQLite file (``agentexec.db``; the demo works in a fresh
temporary directory so every run starts clean). A pool of 2 worker processes runs 20 tasks of
mixed priority while a progress bar follows them; one task fails on purpose and ends ERROR;
then the results and a table of every activity are printed.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from uuid import UUID

import agentexec as ax
import anyio
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()

os.chdir(tempfile.mkdtemp(prefix="agentexec-quickstart-"))  # agentexec.db lands here
ax.CONF.num_workers = 2

pool = ax.Pool()


class Summarize(BaseModel):
    document: str
    fail: bool = False


@pool.task("summarize")
async def summarize(agent_id: UUID, context: Summarize) -> dict[str, object]:
    """Stands in for an agent: a few 'LLM calls', each reporting progress."""
    rng = random.Random(context.document)
    for step, percentage in enumerate((30, 60, 90), start=1):
        await anyio.sleep(rng.uniform(0.05, 0.15))
        await ax.activity.aupdate(agent_id, f"Reading part {step} of {context.document}", percentage)
        if context.fail and step == 2:
            raise ValueError(f"{context.document} is not readable")
    return {"document": context.document, "words": rng.randint(200, 2000)}


STATUS_STYLE = {
    ax.Status.COMPLETE: "green",
    ax.Status.ERROR: "red",
    ax.Status.RUNNING: "yellow",
    ax.Status.QUEUED: "blue",
    ax.Status.CANCELED: "magenta",
}


async def produce() -> list[tuple[ax.Task, object]]:
    jobs = [
        (f"report-{i:02d}.pdf", ax.Priority.HIGH if i % 4 == 0 else ax.Priority.LOW, i == 7)
        for i in range(20)
    ]
    tasks = [
        await ax.enqueue("summarize", Summarize(document=doc, fail=fail), priority=priority)
        for doc, priority, fail in jobs
    ]
    outcomes: dict[UUID, object] = {}
    columns = (TextColumn("[bold]summarizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("tasks", total=len(tasks))

        async def wait(task: ax.Task) -> None:
            try:
                outcomes[task.agent_id] = await ax.get_result(task, timeout=120)
            except ax.TaskFailedError as exc:
                outcomes[task.agent_id] = exc
            progress.advance(bar)

        async with anyio.create_task_group() as tg:
            for task in tasks:
                tg.start_soon(wait, task)
    return [(task, outcomes[task.agent_id]) for task in tasks]


def show(results: list[tuple[ax.Task, object]]) -> None:
    console.print("\n[bold]Results")
    for task, outcome in results:
        doc = task.context.document  # type: ignore[attr-defined]
        if isinstance(outcome, ax.TaskFailedError):
            console.print(f"  {doc}: [red]failed[/red] — {outcome.error}")
        else:
            console.print(f"  {doc}: {outcome}")

    page = ax.activity.list(page_size=50)
    table = Table(title=f"Activities ({page.total})")
    for column, width in (("agent_id", 8), ("task", 9), ("priority", 8), ("status", 8), ("%", 3)):
        table.add_column(column, no_wrap=True, min_width=width)
    table.add_column("latest log", overflow="ellipsis", no_wrap=True, max_width=24)
    priority = {task.agent_id: task.priority.value for task, _ in results}
    for item in page.items:
        style = STATUS_STYLE.get(item.status, "")
        table.add_row(
            str(item.agent_id)[:8], item.agent_type, priority.get(item.agent_id, "?"),
            f"[{style}]{item.status.value}[/{style}]", str(item.latest_percentage or ""),
            item.latest_log or "",
        )
    console.print(table)


def main() -> int:
    pool.start()
    try:
        results = anyio.run(produce)
    finally:
        pool.shutdown(timeout=30)
    show(results)
    failed = sum(isinstance(outcome, ax.TaskFailedError) for _, outcome in results)
    console.print(f"[bold]{len(results) - failed} completed, {failed} failed (on purpose).")
    return 0 if failed == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
