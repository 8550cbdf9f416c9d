"""Several OS processes share one SQLite file: every task is taken exactly once, none lost."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest
from agentexec.task import Envelope, Priority
from agentexec_sqlalchemy.transport.queue import SQLQueue

TOTAL = 2_000
CONSUMERS = 3

# A consumer process: takes tasks until the queue is empty and the producer said it is done,
# then prints the numbers it took as JSON.
CONSUMER = """
import json, sys, anyio
from pathlib import Path
from agentexec_sqlalchemy.transport.queue import SQLQueue

url, queue_name, consumer, done_flag = sys.argv[1:5]

async def main() -> None:
    queue = SQLQueue(url)
    taken = []
    Path(f"{done_flag}.ready-{consumer}").touch()  # the producer starts once all are ready
    while True:
        lease = await queue.reserve(queue_name, consumer, 0.2)
        if lease is None:
            if Path(done_flag).exists() and await queue.length(queue_name) == 0:
                break
            continue
        taken.append(lease.envelope.context["n"])
        await queue.ack(lease)
    print(json.dumps(taken))

anyio.run(main)
"""


async def _produce(queue: SQLQueue, queue_name: str) -> None:
    """Push TOTAL tasks while the consumers run: in batches and one by one, both priorities."""
    with anyio.fail_after(60):
        for start in range(0, TOTAL, 100):
            batch = [
                Envelope(
                    agent_id=uuid.uuid4(),
                    task_name="t",
                    context={"n": n},
                    priority=Priority.HIGH if n % 7 == 0 else Priority.LOW,
                    queue_name=queue_name,
                    enqueued_at=time.time(),
                )
                for n in range(start, start + 100)
            ]
            if start % 200 == 0:
                await queue.push_many(batch)
            else:
                for env in batch:
                    await queue.push(env)


@pytest.mark.slow
def test_processes_on_one_sqlite_file_take_each_task_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    queue_name = f"procs-{uuid.uuid4().hex[:8]}"
    done_flag = tmp_path / "producer-done"
    queue = SQLQueue(url)
    queue.ensure_schema()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONSUMER, url, queue_name, f"proc-{i}", str(done_flag)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(CONSUMERS)
    ]
    try:
        # every consumer running before the first push (a slow start under load used to find
        # the queue drained by the others: "a consumer took nothing")
        deadline = time.monotonic() + 60
        while not all(Path(f"{done_flag}.ready-proc-{i}").exists() for i in range(CONSUMERS)):
            assert time.monotonic() < deadline, "the consumer processes did not start"
            assert all(p.poll() is None for p in procs), "a consumer process exited"
            time.sleep(0.02)
        anyio.run(_produce, queue, queue_name)
        done_flag.touch()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            outputs.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    taken = [n for out in outputs for n in out]
    duplicates = sorted({n for n in taken if taken.count(n) > 1})
    assert not duplicates, f"tasks taken twice: {duplicates[:10]}"
    assert sorted(taken) == list(range(TOTAL)), f"lost: {sorted(set(range(TOTAL)) - set(taken))[:10]}"
    assert all(outputs), f"a consumer took nothing: {[len(o) for o in outputs]}"
    stats = anyio.run(queue.stats, queue_name)
    assert (stats.high, stats.low, stats.in_flight, stats.dead) == (0, 0, 0, 0)
