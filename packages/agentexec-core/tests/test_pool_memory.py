"""The pool end to end on the in-process backends (``memory://``): workers on the pool's thread.

The same lifecycle code runs in worker processes; these tests pin its semantics quickly.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.config import CONF
from agentexec.results import Outcome
from agentexec.runtime import Backends, build_backends, get_backends, set_backends
from agentexec.task import Envelope, Priority

pytestmark = pytest.mark.anyio

WAIT = 10


class Ctx(BaseModel):
    value: int = 0
    delay: float = 0.0


@pytest.fixture
def make_pool(backends: Backends, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    monkeypatch.setattr(CONF, "num_workers", 1)
    pools: list[Any] = []

    def make(queue_name: str | None = None, **kw: Any) -> Any:
        pool = ax.Pool(queue_name=queue_name or f"q{uuid.uuid4().hex[:8]}", backends=backends, **kw)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown(timeout=2)


def statuses(agent_id: UUID) -> list[tuple[Status, str]]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return [(log.status, log.message) for log in detail.logs]


async def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_lifecycle_messages_and_result(make_pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "activity_message_create", "created!")
    monkeypatch.setattr(CONF, "activity_message_started", "started!")
    monkeypatch.setattr(CONF, "activity_message_complete", "done!")
    pool = make_pool()
    seen: list[Status] = []

    @pool.task("double")
    async def double(agent_id: UUID, context: Ctx) -> int:
        detail = await ax.activity.adetail(agent_id)
        assert detail is not None
        seen.append(detail.status)
        return context.value * 2

    pool.start()
    task = await ax.enqueue("double", Ctx(value=21), queue_name=pool.queue_name)
    assert await ax.get_result(task, timeout=WAIT) == 42
    # the handler ran while the activity said RUNNING; the result came after COMPLETE was written
    assert seen == [Status.RUNNING]
    assert statuses(task.agent_id) == [
        (Status.QUEUED, "created!"),
        (Status.RUNNING, "started!"),
        (Status.COMPLETE, "done!"),
    ]
    detail = ax.activity.detail(task.agent_id)
    assert detail is not None and detail.latest_percentage == 100


async def test_failure_is_error_and_the_same_worker_goes_on(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("risky")
    async def risky(agent_id: UUID, context: Ctx) -> int:
        if context.value < 0:
            raise ValueError("Something went wrong")
        return context.value

    pool.start()
    bad = await ax.enqueue("risky", Ctx(value=-1), queue_name=pool.queue_name)
    good = await ax.enqueue("risky", Ctx(value=7), queue_name=pool.queue_name)
    with pytest.raises(ax.TaskFailedError) as caught:
        await ax.get_result(bad, timeout=WAIT)
    assert caught.value.task_name == "risky"
    assert caught.value.error == "Something went wrong"
    assert caught.value.attempts == 1
    assert statuses(bad.agent_id)[-1] == (Status.ERROR, "Task failed with error: Something went wrong")
    assert await ax.get_result(good, timeout=WAIT) == 7
    assert statuses(good.agent_id)[-1][0] is Status.COMPLETE


class Leave(BaseException):
    pass


@pytest.mark.parametrize(
    ("raised", "reason"),
    [(SystemExit(3), "SystemExit: 3"), (KeyboardInterrupt(), "KeyboardInterrupt"), (Leave("bye"), "Leave: bye")],
)
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_base_exception_fails_only_its_task(
    make_pool: Any, raised: BaseException, reason: str, sync: bool
) -> None:
    """sys.exit() or KeyboardInterrupt in a handler is the handler's failure, not a request to
    stop the worker that runs it."""
    pool = make_pool()

    def body(context: Ctx) -> int:
        if context.value < 0:
            raise raised
        return context.value

    if sync:

        @pool.task("leaver")
        def leaver(agent_id: UUID, context: Ctx) -> int:
            return body(context)
    else:

        @pool.task("leaver")
        async def leaver_async(agent_id: UUID, context: Ctx) -> int:
            return body(context)

    pool.start()
    bad = await ax.enqueue("leaver", Ctx(value=-1), queue_name=pool.queue_name)
    good = await ax.enqueue("leaver", Ctx(value=7), queue_name=pool.queue_name)
    with pytest.raises(ax.TaskFailedError) as caught:
        await ax.get_result(bad, timeout=WAIT)
    assert caught.value.error == reason
    assert statuses(bad.agent_id)[-1] == (Status.ERROR, f"Task failed with error: {reason}")
    assert await ax.get_result(good, timeout=WAIT) == 7
    assert pool.running


async def test_task_execute_outside_a_worker_lets_system_exit_through(make_pool: Any) -> None:
    """Called from the application's own code, the task fails and sys.exit() still exits."""
    pool = make_pool()

    @pool.task("quitter")
    async def quitter(agent_id: UUID, context: Ctx) -> int:
        raise SystemExit(5)

    task = await ax.enqueue("quitter", Ctx(), queue_name=pool.queue_name)
    with pytest.raises(SystemExit):
        await task.execute()
    assert statuses(task.agent_id)[-1] == (Status.ERROR, "Task failed with error: SystemExit: 5")


async def test_none_result_completes_waiters(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("nothing")
    async def nothing(agent_id: UUID, context: Ctx) -> None:
        return None

    pool.start()
    task = await ax.enqueue("nothing", Ctx(), queue_name=pool.queue_name)
    with anyio.fail_after(WAIT):
        assert await ax.get_result(task, timeout=WAIT) is None


async def test_model_results_come_back_as_models(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("wrap")
    async def wrap(agent_id: UUID, context: Ctx) -> Ctx:
        return Ctx(value=context.value + 1)

    pool.start()
    task = await ax.enqueue("wrap", Ctx(value=1), queue_name=pool.queue_name)
    assert await ax.get_result(task, timeout=WAIT) == Ctx(value=2)


async def test_sync_handlers_run_in_a_thread(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("blocking")
    def blocking(agent_id: UUID, context: Ctx) -> int:
        time.sleep(0.01)
        return context.value

    pool.start()
    task = await ax.enqueue("blocking", Ctx(value=5), queue_name=pool.queue_name)
    assert await ax.get_result(task, timeout=WAIT) == 5


async def test_unknown_task_is_an_error_naming_it(make_pool: Any, backends: Backends) -> None:
    pool = make_pool()

    @pool.task("known_a")
    async def known_a(agent_id: UUID, context: Ctx) -> None: ...

    @pool.task("known_b")
    async def known_b(agent_id: UUID, context: Ctx) -> None: ...

    pool.start()
    # sent by a producer without this pool (ax.enqueue here refuses the name: UnknownTaskError),
    # so it reaches a worker, which ends it ERROR naming the tasks it knows
    task = ax.Task.queued("mystery", Ctx(), ax.Priority.LOW, pool.queue_name)
    await backends.activity.acreate("mystery", ax.CONF.activity_message_create, task.agent_id)
    await backends.queue.push(task.to_envelope(pool.queue_name), ax.Priority.LOW)
    with pytest.raises(ax.TaskFailedError) as caught:
        await ax.get_result(task, timeout=WAIT)
    assert "'mystery'" in caught.value.error
    assert "known_a, known_b" in caught.value.error
    status, message = statuses(task.agent_id)[-1]
    assert status is Status.ERROR and "'mystery'" in message and "known_a" in message


async def test_invalid_context_is_an_error_with_the_validation_message(
    make_pool: Any, backends: Backends
) -> None:
    pool = make_pool()

    @pool.task("typed")
    async def typed(agent_id: UUID, context: Ctx) -> int:
        return context.value

    pool.start()
    agent_id = uuid.uuid4()
    await backends.activity.acreate("typed", CONF.activity_message_create, agent_id)
    await backends.queue.push(Envelope(
        agent_id=agent_id, task_name="typed", context={"value": "not a number"},
        queue_name=pool.queue_name,
    ))
    with pytest.raises(ax.TaskFailedError) as caught:
        await ax.get_result(agent_id, timeout=WAIT)
    assert "value" in caught.value.error and "Ctx" in caught.value.error
    status, message = statuses(agent_id)[-1]
    assert status is Status.ERROR and "value" in message
    assert (Status.RUNNING, CONF.activity_message_started) not in statuses(agent_id)


async def test_handler_updates_come_between_running_and_complete(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("phases")
    async def phases(agent_id: UUID, context: Ctx) -> None:
        ax.activity.update(agent_id, "Phase 1 complete", percentage=33)
        await ax.activity.aupdate(agent_id, "Phase 2 complete", percentage=66)

    pool.start()
    task = await ax.enqueue("phases", Ctx(), queue_name=pool.queue_name)
    await ax.get_result(task, timeout=WAIT)
    assert statuses(task.agent_id) == [
        (Status.QUEUED, CONF.activity_message_create),
        (Status.RUNNING, CONF.activity_message_started),
        (Status.RUNNING, "Phase 1 complete"),
        (Status.RUNNING, "Phase 2 complete"),
        (Status.COMPLETE, CONF.activity_message_complete),
    ]


async def test_a_handler_sees_its_activity_running(make_pool: Any) -> None:
    """The worker starts a handler without waiting for its RUNNING line to commit: whatever
    the handler reads or writes first (sync or async, before or after an await) comes after it."""
    pool = make_pool()
    seen: list[Any] = []

    @pool.task("look")
    async def look(agent_id: UUID, context: Ctx) -> None:
        seen.append(ax.activity.detail(agent_id).status)  # type: ignore[union-attr]
        ax.activity.update(agent_id, "sync at once")
        await anyio.lowlevel.checkpoint()
        ax.activity.update(agent_id, "sync after a yield")
        seen.append((await ax.activity.adetail(agent_id)).status)  # type: ignore[union-attr]
        await ax.activity.aupdate(agent_id, "async", percentage=50)

    @pool.task("look_sync")
    def look_sync(agent_id: UUID, context: Ctx) -> None:
        seen.append(ax.activity.detail(agent_id).status)  # type: ignore[union-attr]
        ax.activity.update(agent_id, "from a thread")

    pool.start()
    task = await ax.enqueue("look", Ctx(), queue_name=pool.queue_name)
    await ax.get_result(task, timeout=WAIT)
    assert statuses(task.agent_id) == [
        (Status.QUEUED, CONF.activity_message_create),
        (Status.RUNNING, CONF.activity_message_started),
        (Status.RUNNING, "sync at once"),
        (Status.RUNNING, "sync after a yield"),
        (Status.RUNNING, "async"),
        (Status.COMPLETE, CONF.activity_message_complete),
    ]
    task = await ax.enqueue("look_sync", Ctx(), queue_name=pool.queue_name)
    await ax.get_result(task, timeout=WAIT)
    assert statuses(task.agent_id)[1:] == [
        (Status.RUNNING, CONF.activity_message_started),
        (Status.RUNNING, "from a thread"),
        (Status.COMPLETE, CONF.activity_message_complete),
    ]
    assert seen == [Status.RUNNING, Status.RUNNING, Status.RUNNING]


async def test_a_sync_update_first_thing_when_the_activity_is_not_there_yet(
    make_pool: Any, backends: Backends
) -> None:
    """The producer's write of the activity is still behind its push (or never comes) and the
    handler's first statement is a sync update on the loop, which nothing can make wait: the
    worker creates the activity from the task, and the handler's line follows RUNNING."""
    pool = make_pool()

    @pool.task("eager")
    async def eager(agent_id: UUID, context: Ctx) -> None:
        ax.activity.update(agent_id, "first thing", percentage=10)

    pool.start()
    task = ax.Task.create("eager", Ctx())
    await backends.queue.push(task.to_envelope(pool.queue_name))  # no activity written
    await ax.get_result(task, timeout=WAIT)
    assert statuses(task.agent_id) == [
        (Status.QUEUED, CONF.activity_message_create),
        (Status.RUNNING, CONF.activity_message_started),
        (Status.RUNNING, "first thing"),
        (Status.COMPLETE, CONF.activity_message_complete),
    ]


async def test_high_priority_runs_first(make_pool: Any) -> None:
    pool = make_pool()
    order: list[str] = []

    @pool.task("record")
    async def record(agent_id: UUID, context: Ctx) -> None:
        order.append("high" if context.value == 99 else f"low{context.value}")

    lows = [await ax.enqueue("record", Ctx(value=i), queue_name=pool.queue_name) for i in range(5)]
    high = await ax.enqueue("record", Ctx(value=99), priority=Priority.HIGH, queue_name=pool.queue_name)
    pool.start()
    await ax.gather(*lows, high)
    assert order == ["high", "low0", "low1", "low2", "low3", "low4"]


async def test_many_io_bound_tasks_share_one_worker(make_pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "worker_concurrency", 500)
    pool = make_pool()

    @pool.task("sleep")
    async def sleep(agent_id: UUID, context: Ctx) -> None:
        await anyio.sleep(0.1)

    tasks = await ax.enqueue_many([("sleep", Ctx())] * 500, queue_name=pool.queue_name)
    started = time.perf_counter()
    pool.start()
    await ax.gather(*tasks, timeout=WAIT)
    assert time.perf_counter() - started < 2.0


async def test_pools_on_different_queues_keep_to_their_own(make_pool: Any) -> None:
    ran: dict[str, list[str]] = {"a": [], "b": []}
    pool_a, pool_b = make_pool(), make_pool()

    @pool_a.task("job")
    async def job_a(agent_id: UUID, context: Ctx) -> str:
        ran["a"].append(str(agent_id))
        return "a"

    @pool_b.task("job")
    async def job_b(agent_id: UUID, context: Ctx) -> str:
        ran["b"].append(str(agent_id))
        return "b"

    pool_a.start()
    pool_b.start()
    on_a = [await ax.enqueue("job", Ctx(), queue_name=pool_a.queue_name) for _ in range(10)]
    on_b = [await ax.enqueue("job", Ctx(), queue_name=pool_b.queue_name) for _ in range(10)]
    assert await ax.gather(*on_a) == ("a",) * 10
    assert await ax.gather(*on_b) == ("b",) * 10
    assert sorted(ran["a"]) == sorted(str(t.agent_id) for t in on_a)
    assert sorted(ran["b"]) == sorted(str(t.agent_id) for t in on_b)


async def test_graceful_shutdown_finishes_running_tasks_and_leaves_queued_ones(
    make_pool: Any, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CONF, "worker_concurrency", 1)  # one running, one left in the queue
    pool = make_pool()
    started = anyio.Event()
    token = anyio.lowlevel.current_token()

    @pool.task("slow")
    async def slow(agent_id: UUID, context: Ctx) -> int:
        anyio.from_thread.run_sync(started.set, token=token)
        await anyio.sleep(context.delay)
        return context.value

    pool.start()
    running = await ax.enqueue("slow", Ctx(value=1, delay=0.3), queue_name=pool.queue_name)
    queued = await ax.enqueue("slow", Ctx(value=2), queue_name=pool.queue_name)
    with anyio.fail_after(WAIT):
        await started.wait()
    await anyio.to_thread.run_sync(lambda: pool.shutdown(timeout=WAIT))
    assert statuses(running.agent_id)[-1][0] is Status.COMPLETE
    assert await ax.get_result(running, timeout=0.1) == 1
    assert statuses(queued.agent_id) == [(Status.QUEUED, CONF.activity_message_create)]
    assert await backends.queue.length(pool.queue_name) == 1


async def test_shutdown_timeout_gives_running_tasks_back(
    make_pool: Any, backends: Backends
) -> None:
    pool = make_pool()
    runs: list[int] = []

    @pool.task("stuck")
    async def stuck(agent_id: UUID, context: Ctx) -> int:
        runs.append(context.value)
        await anyio.sleep(context.delay)
        return context.value

    pool.start()
    task = await ax.enqueue("stuck", Ctx(value=1, delay=60), queue_name=pool.queue_name)
    await wait_for(lambda: runs == [1])
    await anyio.to_thread.run_sync(lambda: pool.shutdown(timeout=0.1))
    # given back, not lost: QUEUED again and first in line, attempts unchanged
    assert statuses(task.agent_id)[-1][0] is Status.QUEUED
    assert await backends.queue.length(pool.queue_name) == 1
    stats = await backends.queue.stats(pool.queue_name)
    assert stats.in_flight == 0

    again = make_pool(queue_name=pool.queue_name)

    @again.task("stuck")
    async def quick(agent_id: UUID, context: Ctx) -> int:
        return context.value * 10

    again.start()
    assert await ax.get_result(task, timeout=WAIT) == 10


async def test_dead_lettered_tasks_fail_at_once(
    make_pool: Any, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends.queue, "lease_timeout", 0.2)
    pool = make_pool()

    @pool.task("job")
    async def job(agent_id: UUID, context: Ctx) -> None: ...

    # a consumer that took the task on its last attempt and vanished
    agent_id = uuid.uuid4()
    await backends.activity.acreate("job", CONF.activity_message_create, agent_id)
    await backends.queue.push(Envelope(
        agent_id=agent_id, task_name="job", context={}, queue_name=pool.queue_name,
        attempts=backends.queue.max_attempts - 1,
    ))
    lease = await backends.queue.reserve(pool.queue_name, "ghost", 1)
    assert lease is not None
    pool.start()  # its reaper finds the silent consumer
    with pytest.raises(ax.TaskFailedError) as caught:
        await ax.get_result(agent_id, timeout=WAIT)
    assert caught.value.attempts == backends.queue.max_attempts
    assert statuses(agent_id)[-1][0] is Status.ERROR


async def test_a_redelivered_finished_task_is_not_run_again(
    make_pool: Any, backends: Backends
) -> None:
    pool = make_pool()
    runs: list[UUID] = []

    @pool.task("once")
    async def once(agent_id: UUID, context: Ctx) -> None:
        runs.append(agent_id)

    # the worker died after storing the outcome, before acknowledging
    agent_id = uuid.uuid4()
    await backends.activity.acreate("once", CONF.activity_message_create, agent_id)
    await backends.results.set(agent_id, Outcome.ok("once", "first run").encode(), 60)
    await backends.queue.push(Envelope(
        agent_id=agent_id, task_name="once", context={}, queue_name=pool.queue_name, attempts=1,
    ))
    pool.start()
    with anyio.fail_after(WAIT):
        while (await backends.queue.stats(pool.queue_name)).in_flight or await backends.queue.length(pool.queue_name):
            await anyio.sleep(0.01)
    assert runs == []
    assert await ax.get_result(agent_id, timeout=1) == "first run"


async def test_a_redelivered_task_whose_activity_completed_runs_again_quietly(
    make_pool: Any, backends: Backends
) -> None:
    """Its worker died after the COMPLETE line, before storing the value: the value is made
    again by a quiet run, and nothing is written after the final line (the handler's own
    updates included)."""
    pool = make_pool()
    runs: list[UUID] = []

    @pool.task("again")
    async def again(agent_id: UUID, context: Ctx) -> int:
        runs.append(agent_id)
        await ax.activity.aupdate(agent_id, "halfway", percentage=50)
        ax.activity.update(agent_id, "sync halfway", percentage=60)
        return context.value * 2

    agent_id = uuid.uuid4()
    await backends.activity.acreate("again", CONF.activity_message_create, agent_id)
    await backends.activity.aappend(agent_id, CONF.activity_message_started, Status.RUNNING)
    await backends.activity.aappend(agent_id, CONF.activity_message_complete, Status.COMPLETE, 100)
    await backends.queue.push(Envelope(
        agent_id=agent_id, task_name="again", context={"value": 21}, queue_name=pool.queue_name, attempts=1,
    ))
    pool.start()
    assert await ax.get_result(agent_id, timeout=WAIT) == 42
    assert runs == [agent_id]
    assert [s for s, _ in statuses(agent_id)] == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]


async def test_a_redelivered_task_with_a_staged_outcome_is_finished_from_it_not_run(
    make_pool: Any, backends: Backends
) -> None:
    """Its worker died after the handler returned (the outcome staged), before the COMPLETE
    line committed: the next worker writes that line, stores the outcome and acks, without a
    second run."""
    pool = make_pool()
    runs: list[UUID] = []

    @pool.task("staged")
    async def staged(agent_id: UUID, context: Ctx) -> int:
        runs.append(agent_id)
        return -1

    agent_id = uuid.uuid4()
    await backends.activity.acreate("staged", CONF.activity_message_create, agent_id)
    await backends.activity.aappend(agent_id, CONF.activity_message_started, Status.RUNNING)
    await backends.results.stage_many([(agent_id, Outcome.ok("staged", 7).encode())], 60)  # type: ignore[attr-defined]
    await backends.queue.push(Envelope(
        agent_id=agent_id, task_name="staged", context={}, queue_name=pool.queue_name, attempts=1,
    ))
    pool.start()
    assert await ax.get_result(agent_id, timeout=WAIT) == 7
    assert runs == []
    assert [s for s, _ in statuses(agent_id)] == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]


async def test_a_finished_task_stages_its_outcome(make_pool: Any, backends: Backends) -> None:
    """On backends without a joint finish every outcome is staged, a quick handler's too."""
    pool = make_pool()

    @pool.task("stage_me")
    async def stage_me(agent_id: UUID, context: Ctx) -> int:
        return context.value

    pool.start()
    task = await ax.enqueue("stage_me", Ctx(value=5), queue_name=pool.queue_name)
    assert await ax.get_result(task, timeout=WAIT) == 5
    with anyio.fail_after(WAIT):
        while (data := await backends.results.staged(task.agent_id)) is None:  # type: ignore[attr-defined]
            await anyio.sleep(0.01)
    assert Outcome.decode(data).unwrap(task.agent_id) == 5


async def test_a_redelivered_task_whose_activity_failed_is_not_run_again(
    make_pool: Any, backends: Backends
) -> None:
    """Its worker died after the ERROR line, before storing the failure: the failure is stored
    from the activity's final line and the task acknowledged, not run."""
    pool = make_pool()
    runs: list[UUID] = []

    @pool.task("failed")
    async def failed(agent_id: UUID, context: Ctx) -> None:
        runs.append(agent_id)

    agent_id = uuid.uuid4()
    await backends.activity.acreate("failed", CONF.activity_message_create, agent_id)
    await backends.activity.aappend(agent_id, CONF.activity_message_started, Status.RUNNING)
    await backends.activity.aappend(agent_id, "Task failed: boom", Status.ERROR)
    await backends.queue.push(Envelope(
        agent_id=agent_id, task_name="failed", context={}, queue_name=pool.queue_name, attempts=1,
    ))
    pool.start()
    with pytest.raises(ax.TaskFailedError, match="boom"):
        await ax.get_result(agent_id, timeout=WAIT)
    assert runs == []
    with anyio.fail_after(WAIT):
        while (await backends.queue.stats(pool.queue_name)).in_flight:
            await anyio.sleep(0.01)
    assert [s for s, _ in statuses(agent_id)] == [Status.QUEUED, Status.RUNNING, Status.ERROR]


async def test_current_task_is_visible_to_the_handler(make_pool: Any) -> None:
    from agentexec.lifecycle import current_task

    pool = make_pool()

    @pool.task("introspect")
    async def introspect(agent_id: UUID, context: Ctx) -> list[Any]:
        task = current_task()
        assert task is not None
        return [str(task.agent_id), task.attempts]

    pool.start()
    task = await ax.enqueue("introspect", Ctx(), queue_name=pool.queue_name)
    assert await ax.get_result(task, timeout=WAIT) == [str(task.agent_id), 0]


async def test_task_execute_outside_a_worker(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("direct")
    async def direct(agent_id: UUID, context: Ctx) -> int:
        return context.value + 1

    task = await ax.enqueue("direct", Ctx(value=1), queue_name=pool.queue_name)
    assert await task.execute() == 2
    assert [s for s, _ in statuses(task.agent_id)] == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]
    assert await ax.get_result(task, timeout=1) == 2


async def test_enqueue_rejects_a_context_that_is_not_a_model(backends: Backends) -> None:
    with pytest.raises(TypeError, match="pydantic BaseModel"):
        await ax.enqueue("anything", {"value": 1})  # type: ignore[arg-type]


async def test_pool_backends_become_the_process_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    set_backends(None)
    url = f"memory://{uuid.uuid4().hex}"
    monkeypatch.setattr(CONF, "queue_backend", url)
    monkeypatch.setattr(CONF, "results_backend", url)
    monkeypatch.setattr(CONF, "events_backend", url)
    monkeypatch.setattr(CONF, "activity_backend", url)
    try:
        pool = ax.Pool()
        assert get_backends() is pool.backends
        assert not pool.backends.cross_process
        explicit = build_backends({k: f"memory://{uuid.uuid4().hex}" for k in ("queue", "results", "events", "activity")})  # type: ignore[misc]
        set_backends(explicit)
        ax.Pool()  # explicitly set backends are left alone
        assert get_backends() is explicit
    finally:
        set_backends(None)


async def test_task_execute_of_an_unregistered_task_fails_loudly(make_pool: Any) -> None:
    make_pool()  # a pool exists, but nothing registered under this name
    task = await ax.enqueue("nobody_knows_me", Ctx())
    with pytest.raises(LookupError, match="nobody_knows_me"):
        await task.execute()
    assert statuses(task.agent_id)[-1][0] is Status.ERROR
    with pytest.raises(ax.TaskFailedError, match="nobody_knows_me"):
        await ax.get_result(task, timeout=1)


async def test_a_handler_enqueues_onto_its_own_pools_queue(
    make_pool: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child enqueued without ``queue_name`` inside a handler goes to the running pool's queue,
    not to ``CONF.queue_name`` where no worker of this pool would ever take it."""
    monkeypatch.setattr(CONF, "worker_concurrency", 4)  # the parent holds a slot while it waits
    pool = make_pool()
    assert pool.queue_name != CONF.queue_name

    @pool.task("child")
    async def child(agent_id: UUID, context: Ctx) -> int:
        return context.value * 10

    @pool.task("parent")
    async def parent(agent_id: UUID, context: Ctx) -> list[int]:
        kids = [await ax.enqueue("child", Ctx(value=i)) for i in range(3)]
        assert {k.queue_name for k in kids} == {pool.queue_name}
        many = await ax.enqueue_many([("child", Ctx(value=7))])
        assert many[0].queue_name == pool.queue_name
        return list(await ax.gather(*kids, *many, timeout=WAIT))

    pool.start()
    task = await ax.enqueue("parent", Ctx(), queue_name=pool.queue_name)
    assert await ax.get_result(task, timeout=WAIT) == [0, 10, 20, 70]
    outside = await ax.enqueue("child", Ctx(value=1))
    assert outside.queue_name == CONF.queue_name
