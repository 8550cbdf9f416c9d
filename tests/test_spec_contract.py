"""spec/core-api.md, spec/task-lifecycle.md and spec/worker-pool.md, as a user reads them.

Each test writes what the spec shows (names, parameter orders, defaults, return types, messages)
and checks the documented answer. The pool runs in-process on the ``memory://`` backends (the
same lifecycle code as in worker processes); the real-process runs are in ``tests/e2e``.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.activity.status import Status
from agentexec.config import CONF, Config
from agentexec.runtime import Backends, build_backends, set_backends
from agentexec.task import TaskDefinition
from pydantic import BaseModel

pytestmark = pytest.mark.anyio

WAIT = 10


class MyContext(BaseModel):
    data: str
    count: int = 1


class ResearchContext(BaseModel):
    company: str
    focus_areas: list[str] = []
    max_sources: int = 10


@pytest.fixture
def backends() -> Iterator[Backends]:
    url = f"memory://{uuid.uuid4().hex}"
    built = build_backends({k: url for k in ("queue", "results", "events", "activity")})  # type: ignore[misc]
    set_backends(built)
    yield built
    set_backends(None)


@pytest.fixture
def make_pool(backends: Backends, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``ax.Pool(queue_name=...)`` on the memory backends; shut down after the test."""
    monkeypatch.setattr(CONF, "num_workers", 1)
    pools: list[Any] = []

    def make(queue_name: str | None = None) -> Any:
        pool = ax.Pool(queue_name=queue_name or f"q{uuid.uuid4().hex[:8]}", backends=backends)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown(timeout=2)


def log_lines(agent_id: UUID) -> list[tuple[Status, str, int | None]]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return [(log.status, log.message, log.percentage) for log in detail.logs]


def params(func: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(func).parameters.values()]


# -- Module: agentexec ------------------------------------------------------------------------
def test_module_exports_what_the_spec_lists() -> None:
    for name in ("enqueue", "gather", "get_result", "Priority", "Pool", "activity", "OpenAIRunner",
                 "Pipeline", "Base", "CONF", "close_redis"):
        assert getattr(ax, name) is not None, name
    for name in ("enqueue", "gather", "get_result", "close_redis"):
        assert inspect.iscoroutinefunction(getattr(ax, name)), name
    from agentexec import Priority, enqueue

    assert enqueue is ax.enqueue and Priority is ax.Priority
    assert isinstance(ax.CONF, Config)


def test_api_signatures_match_the_spec() -> None:
    P = ax.Priority
    assert params(ax.enqueue)[:4] == [
        ("task_name", inspect.Parameter.empty), ("context", inspect.Parameter.empty),
        ("priority", P.LOW), ("queue_name", None),
    ]
    assert params(ax.get_result)[:2] == [("task", inspect.Parameter.empty), ("timeout", 300)]
    tasks = inspect.signature(ax.gather).parameters["tasks"]
    assert tasks.kind is inspect.Parameter.VAR_POSITIONAL
    assert params(ax.Task.create) == [
        ("task_name", inspect.Parameter.empty), ("context", inspect.Parameter.empty)
    ]
    assert params(ax.Pool.__init__)[:4] == [
        ("self", inspect.Parameter.empty), ("engine", None), ("database_url", None), ("queue_name", None)
    ]
    # the spec's call is task(name); what follows is keyword-only (timeout=, retries=, ... of
    # docs/execution-control.md), so every call the spec shows still works
    task_params = inspect.signature(ax.Pool.task).parameters.values()
    assert [(p.name, p.default) for p in task_params if p.kind is not inspect.Parameter.KEYWORD_ONLY] == [
        ("self", inspect.Parameter.empty), ("name", inspect.Parameter.empty),
    ]
    assert all(p.default is not inspect.Parameter.empty for p in task_params if p.kind is inspect.Parameter.KEYWORD_ONLY)
    assert params(ax.Pool.shutdown) == [("self", inspect.Parameter.empty), ("timeout", None)]
    assert params(ax.Pool.start) == params(ax.Pool.run) == [("self", inspect.Parameter.empty)]
    assert inspect.iscoroutinefunction(ax.Task.execute)


# -- Priority ---------------------------------------------------------------------------------
def test_priority_enum() -> None:
    assert issubclass(ax.Priority, Enum)
    assert ax.Priority.HIGH.value == "high" and ax.Priority.LOW.value == "low"
    assert [p.name for p in ax.Priority] == ["HIGH", "LOW"]
    assert ax.Priority("high") is ax.Priority.HIGH


# -- CONF -------------------------------------------------------------------------------------
SPEC_DEFAULTS: dict[str, Any] = {
    "queue_name": "agentexec_tasks",
    "table_prefix": "agentexec_",
    "num_workers": 4,
    "graceful_shutdown_timeout": 300,
    "redis_pool_size": 10,
    "redis_pool_timeout": 5,
    "result_ttl": 3600,
    "activity_message_create": "Waiting to start.",
    "activity_message_started": "Task started.",
    "activity_message_complete": "Task completed successfully.",
    "activity_message_error": "Task failed with error: {error}",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    """No AGENTEXEC_* variables and no .env file."""
    import os

    for key in list(os.environ):
        if key.startswith("AGENTEXEC_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_conf_defaults(clean_env: pytest.MonkeyPatch) -> None:
    conf = Config()
    for key, default in SPEC_DEFAULTS.items():
        value = getattr(conf, key)
        assert value == default and type(value) is type(default), key
    assert conf.redis_url is None  # unset: the embedded SQL transport (the spec requires one)


def test_conf_reads_agentexec_env_vars(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AGENTEXEC_REDIS_URL", "redis://example:6379/3")
    clean_env.setenv("AGENTEXEC_NUM_WORKERS", "8")
    clean_env.setenv("AGENTEXEC_GRACEFUL_SHUTDOWN_TIMEOUT", "60")
    clean_env.setenv("AGENTEXEC_QUEUE_NAME", "email_queue")
    clean_env.setenv("AGENTEXEC_TABLE_PREFIX", "myapp_")
    clean_env.setenv("AGENTEXEC_REDIS_POOL_SIZE", "20")
    clean_env.setenv("AGENTEXEC_REDIS_POOL_TIMEOUT", "7")
    clean_env.setenv("AGENTEXEC_RESULT_TTL", "60")
    clean_env.setenv("AGENTEXEC_ACTIVITY_MESSAGE_ERROR", "boom: {error}")
    conf = Config()
    assert conf.redis_url == "redis://example:6379/3"
    assert (conf.num_workers, conf.graceful_shutdown_timeout) == (8, 60)
    assert (conf.queue_name, conf.table_prefix) == ("email_queue", "myapp_")
    assert (conf.redis_pool_size, conf.redis_pool_timeout, conf.result_ttl) == (20, 7, 60)
    assert conf.activity_message_error.format(error="x") == "boom: x"


# -- Task -------------------------------------------------------------------------------------
def test_task_create() -> None:
    ctx = MyContext(data="value")
    task = ax.Task.create("my_task", ctx)
    assert isinstance(task, ax.Task)
    assert isinstance(task.agent_id, UUID) and task.agent_id.version == 4
    assert task.task_name == "my_task"
    assert task.context == ctx and isinstance(task.context, MyContext)
    assert ax.Task.create("my_task", ctx).agent_id != task.agent_id
    with pytest.raises(TypeError, match="BaseModel"):
        ax.Task.create("my_task", {"data": "value"})  # type: ignore[arg-type]


# -- enqueue / get_result / gather --------------------------------------------------------------
async def test_enqueue_returns_a_queued_task(backends: Backends) -> None:
    ctx = MyContext(data="value")
    task = await ax.enqueue("my_task", ctx)
    assert isinstance(task, ax.Task)
    assert isinstance(task.agent_id, UUID)
    assert task.task_name == "my_task"
    assert task.context == ctx and isinstance(task.context, MyContext)
    # the activity is QUEUED with CONF.activity_message_create; the task is on CONF.queue_name
    assert [line[:2] for line in log_lines(task.agent_id)] == [(Status.QUEUED, "Waiting to start.")]
    assert ax.activity.detail(task.agent_id).agent_type == "my_task"  # type: ignore[union-attr]
    lease = await backends.queue.reserve(CONF.queue_name, "c", 1.0)
    assert lease is not None and lease.envelope.agent_id == task.agent_id
    await backends.queue.ack(lease)


async def test_enqueue_rejects_a_context_that_is_not_a_model(backends: Backends) -> None:
    with pytest.raises(TypeError, match="BaseModel"):
        await ax.enqueue("my_task", {"data": "value"})  # type: ignore[arg-type]


async def test_high_priority_goes_first_low_is_fifo(backends: Backends, unique_name: str) -> None:
    from agentexec import Priority, enqueue

    low1 = await enqueue("t", MyContext(data="1"), queue_name=unique_name)
    low2 = await enqueue("t", MyContext(data="2"), priority=Priority.LOW, queue_name=unique_name)
    high = await enqueue("t", MyContext(data="3"), priority=Priority.HIGH, queue_name=unique_name)
    order = []
    for _ in range(3):
        lease = await backends.queue.reserve(unique_name, "c", 1.0)
        assert lease is not None
        order.append(lease.envelope.agent_id)
        await backends.queue.ack(lease)
    assert order == [high.agent_id, low1.agent_id, low2.agent_id]
    assert await backends.queue.length(CONF.queue_name) == 0  # nothing went to the default queue


async def test_get_result_times_out_with_timeout_error(backends: Backends) -> None:
    task = await ax.enqueue("never_run", MyContext(data="x"), queue_name=f"q{uuid.uuid4().hex}")
    with anyio.fail_after(5), pytest.raises(TimeoutError):
        await ax.get_result(task, timeout=0.2)


# -- Pool ---------------------------------------------------------------------------------------
async def test_pool_runs_the_documented_lifecycle(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("research_company")
    async def research_company(agent_id: UUID, context: ResearchContext) -> str:
        # the "Manual Lifecycle" example: sync ax.activity calls inside the handler
        ax.activity.update(agent_id, "Starting phase 1", percentage=0)
        ax.activity.update(agent_id, "Phase 1 complete", percentage=33)
        return "Research complete"

    @pool.task("analyze")
    async def analyze(agent_id: UUID, context: MyContext) -> dict[str, Any]:
        return {"score": 0.85, "summary": context.data}

    pool.start()
    t1 = await ax.enqueue("research_company", ResearchContext(company="Acme"), queue_name=pool.queue_name)
    t2 = await ax.enqueue("analyze", MyContext(data="ok"), queue_name=pool.queue_name)
    with anyio.fail_after(WAIT):
        results = await ax.gather(t1, t2)
    assert isinstance(results, tuple)
    assert results == ("Research complete", {"score": 0.85, "summary": "ok"})
    assert (await ax.get_result(t2, timeout=300))["score"] == 0.85
    assert log_lines(t1.agent_id) == [
        (Status.QUEUED, "Waiting to start.", 0),
        (Status.RUNNING, "Task started.", None),
        (Status.RUNNING, "Starting phase 1", 0),
        (Status.RUNNING, "Phase 1 complete", 33),
        (Status.COMPLETE, "Task completed successfully.", 100),
    ]
    detail = ax.activity.detail(t1.agent_id)
    assert detail is not None and detail.status is Status.COMPLETE and detail.latest_percentage == 100


async def test_a_failing_task_is_error_and_the_worker_continues(
    make_pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool()

    calls: list[UUID] = []

    @pool.task("risky_task")
    async def risky_task(agent_id: UUID, context: MyContext) -> None:
        calls.append(agent_id)
        raise ValueError("Invalid input")

    @pool.task("my_task_name")
    async def my_task(agent_id: UUID, context: MyContext) -> str:
        return "result"

    caplog.set_level(logging.INFO, logger="agentexec")
    pool.start()
    bad = await ax.enqueue("risky_task", MyContext(data="x"), queue_name=pool.queue_name)
    good = await ax.enqueue("my_task_name", MyContext(data="y"), queue_name=pool.queue_name)
    with anyio.fail_after(WAIT):
        assert await ax.get_result(good) == "result"
        with pytest.raises(ax.TaskFailedError, match="Invalid input"):
            await ax.get_result(bad)
    assert log_lines(bad.agent_id)[-1] == (Status.ERROR, "Task failed with error: Invalid input", None)
    assert calls == [bad.agent_id]  # "agentexec doesn't have built-in retry" for a handler's error
    messages = [r.getMessage() for r in caplog.records]
    assert "Processing task: risky_task" in messages
    assert "Task failed: ValueError: Invalid input" in messages
    assert "Task completed: my_task_name" in messages


def test_worker_log_lines_are_prefixed_with_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    """What the pool's main process prints for a record forwarded by worker N."""
    import json

    from agentexec.worker.logs import emit_worker_record

    caplog.set_level(logging.INFO, logger="agentexec")
    for worker, level, message in [
        (0, "INFO", "Processing task: research_company"),
        (0, "INFO", "Task completed: research_company"),
        (1, "ERROR", "Task failed: ValueError: Invalid input"),
    ]:
        emit_worker_record(json.dumps({
            "worker": worker, "pid": 1, "level": level, "levelno": logging.getLevelName(level),
            "logger": "agentexec.worker", "message": message, "time": 0.0,
        }))
    assert [r.getMessage() for r in caplog.records] == [
        "[Worker 0] Processing task: research_company",
        "[Worker 0] Task completed: research_company",
        "[Worker 1] Task failed: ValueError: Invalid input",
    ]


async def test_task_definition_as_the_spec_shows(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("research")
    async def research(agent_id: UUID, context: ResearchContext) -> dict[str, Any]:
        return {"company": context.company}

    definition = pool.tasks["research"]
    assert isinstance(definition, TaskDefinition) and isinstance(definition, ax.TaskDefinition)
    assert (definition.name, definition.handler, definition.context_class) == (
        "research", research, ResearchContext
    )
    # "Equivalent to:" assigning the definition yourself; the workers run it the same way
    async def summarize(agent_id: UUID, context: MyContext) -> str:
        return context.data.upper()

    pool.tasks["summarize"] = TaskDefinition(
        name="summarize", handler=summarize, context_class=MyContext
    )
    pool.start()
    task = await ax.enqueue("summarize", MyContext(data="abc"), queue_name=pool.queue_name)
    with anyio.fail_after(WAIT):
        assert await ax.get_result(task) == "ABC"


def test_task_definition_infers_the_context_class() -> None:
    async def handler(agent_id: UUID, context: ResearchContext) -> None: ...

    assert TaskDefinition(name="x", handler=handler).context_class is ResearchContext

    async def untyped(agent_id, context):  # type: ignore[no-untyped-def]
        ...

    with pytest.raises(TypeError, match="context"):
        TaskDefinition(name="x", handler=untyped)


async def test_task_execute_runs_the_lifecycle(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("execute_me")
    async def execute_me(agent_id: UUID, context: MyContext) -> str:
        return context.data * 2

    task = ax.Task.create("execute_me", MyContext(data="ab"))
    ax.activity.create("execute_me", CONF.activity_message_create, agent_id=task.agent_id)
    assert await task.execute() == "abab"
    assert [s for s, _, _ in log_lines(task.agent_id)] == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]
    assert await ax.get_result(task, timeout=1) == "abab"  # "Stores result if returned"


async def test_start_is_non_blocking_and_shutdown_takes_a_timeout(make_pool: Any) -> None:
    pool = make_pool()

    @pool.task("slow")
    async def slow(agent_id: UUID, context: MyContext) -> str:
        await anyio.sleep(0.2)
        return "done"

    with anyio.fail_after(WAIT):
        pool.start()  # returns at once
        task = await ax.enqueue("slow", MyContext(data="x"), queue_name=pool.queue_name)
        while ax.activity.detail(task.agent_id).status is not Status.RUNNING:  # type: ignore[union-attr]
            await anyio.sleep(0.01)
        await anyio.to_thread.run_sync(lambda: pool.shutdown(timeout=60))  # the running task finishes
    assert ax.activity.detail(task.agent_id).status is Status.COMPLETE  # type: ignore[union-attr]
    assert not pool.running
    pool.shutdown(timeout=0)  # again: nothing to do


async def test_pools_on_different_queues_run_their_own_tasks(make_pool: Any) -> None:
    pool_high, pool_low = make_pool("high_priority"), make_pool("low_priority")
    assert (pool_high.queue_name, pool_low.queue_name) == ("high_priority", "low_priority")

    @pool_high.task("urgent_task")
    async def urgent_task(agent_id: UUID, context: MyContext) -> str:
        return "high"

    @pool_low.task("background_task")
    async def background_task(agent_id: UUID, context: MyContext) -> str:
        return "low"

    pool_high.start()
    pool_low.start()
    a = await ax.enqueue("urgent_task", MyContext(data="x"), queue_name="high_priority")
    b = await ax.enqueue("background_task", MyContext(data="x"), queue_name="low_priority")
    with anyio.fail_after(WAIT):
        assert await ax.gather(a, b) == ("high", "low")


def test_pool_default_queue_is_conf_queue_name(backends: Backends) -> None:
    assert ax.Pool(backends=backends).queue_name == CONF.queue_name
    assert ax.Pool(queue_name=None, backends=backends).queue_name == "agentexec_tasks"


# -- scheduler-and-event-bus.md (the looser spec): its formats and keywords -----------------------
def test_the_schedule_formats_of_the_scheduler_spec() -> None:
    from datetime import UTC, datetime, timedelta

    from agentexec.schedule import make_timing, parse_interval

    assert [parse_interval(s) for s in ("5 minutes", "1 hour", "30 seconds", "2 days", "1 week")] == [
        timedelta(minutes=5), timedelta(hours=1), timedelta(seconds=30), timedelta(days=2),
        timedelta(weeks=1),
    ]
    monday = datetime(2024, 1, 1, 0, 30, tzinfo=UTC)  # a Monday
    for cron, expected in [
        ("0 9 * * *", datetime(2024, 1, 1, 9, 0, tzinfo=UTC)),
        ("0 */2 * * *", datetime(2024, 1, 1, 2, 0, tzinfo=UTC)),
        ("0 0 * * 1", datetime(2024, 1, 8, 0, 0, tzinfo=UTC)),
    ]:
        assert make_timing(cron=cron, timezone="UTC").next_after(monday) == expected, cron


async def test_publish_with_the_spec_keywords(backends: Backends) -> None:
    async with ax.events.subscribe("email.*") as events:
        await ax.events.publish(
            event_type="email.batch_processed", source_agent="email-agent", payload={"batch_size": 10}
        )
        with anyio.fail_after(WAIT):
            event = await events.__anext__()
    assert (event.event_type, event.source_agent, event.payload) == (
        "email.batch_processed", "email-agent", {"batch_size": 10}
    )
    with pytest.raises(TypeError, match="not both"):
        await ax.events.publish("x.y", None, source="a", source_agent="b")


# -- which backends ax.enqueue / ax.activity use when a suite changes its set-up between tests ------
def _memory_backends() -> Backends:
    url = f"memory://{uuid.uuid4().hex}"
    return build_backends({k: url for k in ("queue", "results", "events", "activity")})  # type: ignore[misc]


def test_backends_built_from_conf_follow_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentexec.runtime import get_activity_store, get_backends

    set_backends(None)
    try:
        for kind in ("queue", "results", "events", "activity"):
            monkeypatch.setattr(CONF, f"{kind}_backend", "memory://spec-a")
        first = get_backends()
        assert get_backends() is first and get_activity_store() is first.activity
        for kind in ("queue", "results", "events", "activity"):
            monkeypatch.setattr(CONF, f"{kind}_backend", "memory://spec-b")
        second = get_backends()
        assert second is not first and second.urls == {k: "memory://spec-b" for k in second.urls}
        assert get_activity_store() is second.activity
        mine = _memory_backends()
        set_backends(mine)  # the user's choice stays, whatever CONF says
        monkeypatch.setattr(CONF, "queue_backend", "memory://spec-c")
        assert get_backends() is mine and get_activity_store() is mine.activity
    finally:
        set_backends(None)


def test_the_activity_store_alone_follows_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentexec.runtime import get_activity_store

    set_backends(None)
    monkeypatch.setattr(CONF, "activity_backend", "memory://spec-d")
    first = get_activity_store()
    assert get_activity_store() is first
    monkeypatch.setattr(CONF, "activity_backend", "memory://spec-e")
    assert get_activity_store() is not first


def test_each_new_pool_becomes_the_process_default() -> None:
    """A suite that builds a pool per test (each on its own database) enqueues to the newest."""
    from agentexec.runtime import get_backends

    set_backends(None)
    try:
        ax.Pool(backends=_memory_backends())
        second = ax.Pool(backends=_memory_backends())
        assert get_backends() is second.backends
        mine = _memory_backends()
        set_backends(mine)
        ax.Pool(backends=_memory_backends())
        assert get_backends() is mine
    finally:
        set_backends(None)
