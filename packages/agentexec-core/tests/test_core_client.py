"""The producer API on the memory backends: enqueue, get_result and gather."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anyio
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.memory.activity import MemoryActivityStore
from agentexec.memory.events import MemoryEvents
from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults
from agentexec.results import Outcome
from agentexec.runtime import Backends, set_backends

pytestmark = pytest.mark.anyio


class Ctx(BaseModel):
    company: str


class Answer(BaseModel):
    text: str


@pytest.fixture
def backends() -> Iterator[Backends]:
    bundle = Backends(
        queue=MemoryQueue(), results=MemoryResults(), events=MemoryEvents(),
        activity=MemoryActivityStore(), cross_process=False,
    )
    set_backends(bundle)
    yield bundle
    set_backends(None)


async def test_enqueue_queues_the_task_and_its_activity(backends: Backends, unique_name: str) -> None:
    task = await ax.enqueue("research", Ctx(company="acme"), ax.Priority.HIGH, queue_name=unique_name)
    assert (task.task_name, task.context, task.queue_name) == ("research", Ctx(company="acme"), unique_name)
    detail = backends.activity.detail(task.agent_id)
    assert detail is not None and detail.status is Status.QUEUED
    assert detail.logs[0].message == ax.CONF.activity_message_create
    lease = await backends.queue.reserve(unique_name, "c", 1.0)
    assert lease is not None
    assert lease.envelope.agent_id == task.agent_id
    assert lease.envelope.priority is ax.Priority.HIGH
    assert lease.envelope.context == {"company": "acme"}


async def test_enqueue_many_keeps_order_and_priorities(backends: Backends, unique_name: str) -> None:
    tasks = await ax.enqueue_many(
        [("a", Ctx(company="1")), ("b", Ctx(company="2"), ax.Priority.HIGH)], queue_name=unique_name
    )
    assert [t.task_name for t in tasks] == ["a", "b"]
    first = await backends.queue.reserve(unique_name, "c", 1.0)
    assert first is not None and first.envelope.task_name == "b"
    assert await ax.enqueue_many([]) == []


@pytest.mark.parametrize("context", [{"company": "acme"}, "acme", None])
async def test_enqueue_rejects_a_context_that_is_not_a_model(backends: Backends, context: object) -> None:
    with pytest.raises(TypeError, match="context must be a pydantic BaseModel instance"):
        await ax.enqueue("research", context)  # type: ignore[arg-type]
    assert backends.activity.list().total == 0, "nothing is written for a rejected call"


async def test_enqueue_rejects_a_bad_priority(backends: Backends) -> None:
    with pytest.raises(TypeError, match=r"priority must be ax\.Priority\.HIGH or ax\.Priority\.LOW"):
        await ax.enqueue("research", Ctx(company="a"), "high")  # type: ignore[arg-type]


async def test_get_result_returns_the_stored_value_as_its_model(backends: Backends) -> None:
    task = await ax.enqueue("research", Ctx(company="acme"))
    await backends.results.set(task.agent_id, Outcome.ok("research", Answer(text="hi")).encode(), 60)
    assert await ax.get_result(task, timeout=1) == Answer(text="hi")
    assert await ax.get_result(str(task.agent_id), timeout=1) == Answer(text="hi")


async def test_get_result_wakes_when_the_result_arrives(backends: Backends) -> None:
    task = await ax.enqueue("research", Ctx(company="acme"))
    got: list[object] = []

    async def wait() -> None:
        got.append(await ax.get_result(task, timeout=5))

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.05)
            await backends.results.set(task.agent_id, Outcome.ok("research", 42).encode(), 60)
    assert got == [42]


async def test_get_result_times_out_with_timeout_error(backends: Backends) -> None:
    with pytest.raises(TimeoutError):
        await ax.get_result(uuid.uuid4(), timeout=0.1)


async def test_get_result_raises_a_stored_failure(backends: Backends) -> None:
    task = await ax.enqueue("research", Ctx(company="acme"))
    await backends.results.set(task.agent_id, Outcome.failed("research", "boom").encode(), 60)
    with pytest.raises(ax.TaskFailedError, match="boom"):
        await ax.get_result(task, timeout=1)


async def test_gather_returns_results_in_task_order(backends: Backends) -> None:
    tasks = [await ax.enqueue("t", Ctx(company=str(i))) for i in range(3)]
    for i, task in reversed(list(enumerate(tasks))):
        await backends.results.set(task.agent_id, Outcome.ok("t", i * 10).encode(), 60)
    assert await ax.gather(*tasks, timeout=1) == (0, 10, 20)
    assert await ax.gather() == ()


async def test_gather_raises_the_first_failure_itself(backends: Backends) -> None:
    ok, bad = await ax.enqueue("t", Ctx(company="a")), await ax.enqueue("t", Ctx(company="b"))
    await backends.results.set(ok.agent_id, Outcome.ok("t", 1).encode(), 60)
    await backends.results.set(bad.agent_id, Outcome.failed("t", "bad input").encode(), 60)
    with pytest.raises(ax.TaskFailedError, match="bad input"):
        await ax.gather(ok, bad, timeout=1)


async def test_a_failed_push_raises_and_leaves_no_activity_queued_forever(
    backends: Backends, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("queue unreachable")

    monkeypatch.setattr(backends.queue, "push", down)
    monkeypatch.setattr(backends.queue, "push_many", down)
    before = backends.activity.list(page_size=100).total
    with pytest.raises(ConnectionError, match="queue unreachable"):
        await ax.enqueue("research", Ctx(company="acme"), queue_name=unique_name)
    with pytest.raises(ConnectionError, match="queue unreachable"):
        await ax.enqueue_many([("research", Ctx(company="b")), ("research", Ctx(company="c"))],
                              queue_name=unique_name)
    page = backends.activity.list(page_size=100)
    assert page.total == before + 3
    assert {item.status for item in page.items} == {Status.ERROR}
    assert all("not queued: queue unreachable" in (item.latest_log or "") for item in page.items)


async def test_enqueue_takes_the_handler_itself_and_its_result_comes_back(
    backends: Backends, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ax.enqueue(handler, ctx)``: the typed form (tests/test_typing.py checks the types)."""
    monkeypatch.setattr(ax.CONF, "num_workers", 1)
    pool = ax.Pool(queue_name=unique_name, backends=backends)

    @pool.task("research")
    async def research(agent_id: uuid.UUID, context: Ctx) -> Answer:
        return Answer(text=context.company.upper())

    pool.start()
    try:
        task = await ax.enqueue(research, Ctx(company="acme"), queue_name=unique_name)
        assert task.task_name == "research"
        assert await ax.get_result(task, timeout=10) == Answer(text="ACME")
        assert await research(task.agent_id, Ctx(company="x")) == Answer(text="X")  # still callable
    finally:
        pool.shutdown(timeout=2)


async def test_a_function_that_is_not_a_task_is_refused(backends: Backends) -> None:
    async def stray(agent_id: uuid.UUID, context: Ctx) -> None: ...

    with pytest.raises(TypeError, match=r"stray is not a task of any pool .*@pool.task\('name'\)"):
        await ax.enqueue(stray, Ctx(company="acme"))


async def test_a_misspelled_task_name_fails_at_enqueue_when_a_pool_is_known(
    backends: Backends, unique_name: str
) -> None:
    pool = ax.Pool(queue_name=unique_name, backends=backends)

    @pool.task("research")
    async def research(agent_id: uuid.UUID, context: Ctx) -> str:
        return ""

    with pytest.raises(ax.UnknownTaskError) as caught:
        await ax.enqueue("reserch", Ctx(company="acme"), queue_name=unique_name)
    message = str(caught.value)
    assert "unknown task 'reserch'" in message and "Did you mean 'research'?" in message
    assert f"queue {unique_name!r}" in message and "Registered tasks: research." in message
    assert await backends.queue.length(unique_name) == 0  # nothing was pushed
    with pytest.raises(ax.UnknownTaskError, match="reserch"):
        await ax.enqueue_many([("reserch", Ctx(company="acme"))], queue_name=unique_name)
    # a queue no pool of this process serves: a producer-only process, not checked
    other = await ax.enqueue("anything", Ctx(company="acme"), queue_name=unique_name + "-other")
    assert other.task_name == "anything"
