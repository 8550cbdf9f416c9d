"""The line writer's joint finish (:class:`agentexec.backends.JointFinish`): a batch of finished
tasks through the store's one call when it offers one, step by step when that call fails."""

from __future__ import annotations

import time
from collections.abc import Sequence
from uuid import UUID

import anyio
import pytest

from agentexec.activity.status import Status
from agentexec.backends import Finish, Lease, LogEntry, QueueBackend, ResultBackend
from agentexec.memory.activity import MemoryActivityStore
from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults
from agentexec.task import Envelope, Priority
from agentexec.worker.writer import ActivityWriter

pytestmark = pytest.mark.anyio


class JointStore(MemoryActivityStore):
    """A memory store whose joint finish fails its first ``failures`` calls (writing nothing)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls: list[int] = []

    def joint_finish(self, results: ResultBackend, queue: QueueBackend) -> Finish | None:
        async def finish(
            entries: Sequence[LogEntry], outcomes: Sequence[tuple[UUID, bytes]], ttl: int,
            acks: Sequence[Lease],
        ) -> None:
            self.calls.append(len(entries))
            if self.failures:
                self.failures -= 1
                raise RuntimeError("refused")
            await self.aappend_many(entries)
            for agent_id, data in outcomes:
                await results.set(agent_id, data, ttl)
            for lease in acks:
                await queue.ack(lease)

        return finish


async def _run(store: JointStore, count: int) -> tuple[MemoryResults, MemoryQueue, list[Lease]]:
    results, queue = MemoryResults(), MemoryQueue()
    for _ in range(count):
        agent_id = await store.acreate("t", "queued")
        await queue.push(Envelope(agent_id=agent_id, task_name="t", context={}, priority=Priority.LOW,
                                  queue_name="q", enqueued_at=time.time()))
    leases = [lease for _ in range(count) if (lease := await queue.reserve("q", "w", 1.0)) is not None]
    writer = ActivityWriter(store, results, queue)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for lease in leases:
            agent_id = lease.envelope.agent_id
            writer.submit(LogEntry(agent_id, "done", Status.COMPLETE, 100), outcome=(agent_id, b"out"), ack=lease)
        with anyio.fail_after(10):
            await writer.close()
    assert writer.health.unfinished == 0
    for lease in leases:
        assert await results.get(lease.envelope.agent_id) == b"out"
        detail = await store.adetail(lease.envelope.agent_id)
        assert detail is not None and detail.status == Status.COMPLETE
    assert (await queue.stats("q")).in_flight == 0
    return results, queue, leases


async def test_a_batch_of_finished_tasks_goes_through_the_joint_finish() -> None:
    store = JointStore(failures=0)
    await _run(store, 4)
    assert store.calls == [4]


async def test_a_failed_joint_finish_is_written_step_by_step() -> None:
    store = JointStore(failures=1)
    await _run(store, 3)
    assert store.calls == [3]  # tried once; the lines, outcomes and acks then went the usual way
