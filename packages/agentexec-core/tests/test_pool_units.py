"""Pool registration, lanes, log forwarding and the ``agentexec run`` command line, in isolation."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import uuid
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.cli import COMMAND_MODULES, build_parser, main
from agentexec.cli.run import load_pool
from agentexec.config import CONF
from agentexec.lanes import lane_queue_name
from agentexec.runtime import Backends, set_backends
from agentexec.task import TaskDefinition
from agentexec.worker.channels import (
    control_channel,
    is_shutdown_for,
    logs_channel,
    shutdown_message,
)
from agentexec.worker.logs import (
    WRITE_CHARS,
    JsonFormatter,
    LogForwarder,
    emit_worker_record,
    install_forwarder,
    printers,
)


class Ctx(BaseModel):
    value: int = 0


def test_task_decorator_registers_a_definition_with_the_inferred_context(backends: Backends) -> None:
    pool = ax.Pool(backends=backends)

    @pool.task("research")
    async def research(agent_id: UUID, context: Ctx) -> str:
        return "result"

    definition = pool.tasks["research"]
    assert isinstance(definition, TaskDefinition)
    assert definition.name == "research"
    assert definition.handler is research  # the decorator hands the function back unchanged
    assert definition.context_class is Ctx
    assert pool.queue_name == CONF.queue_name


def test_registration_errors_say_what_to_do(backends: Backends) -> None:
    pool = ax.Pool(backends=backends, queue_name="q")

    @pool.task("dup")
    async def first(agent_id: UUID, context: Ctx) -> None: ...

    with pytest.raises(ValueError, match="already registered"):
        pool.task("dup")(_other)
    with pytest.raises(TypeError, match="context"):

        @pool.task("untyped")
        async def untyped(agent_id, context):  # type: ignore[no-untyped-def]
            ...

    with pytest.raises(TypeError, match="queue_name"):
        ax.Pool(backends=backends, queue_name="")


async def _other(agent_id: UUID, context: Ctx) -> None: ...


def test_lanes(backends: Backends, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "worker_concurrency", 3)
    pool = ax.Pool(backends=backends, queue_name="jobs")
    assert [(lane.name, lane.queue_name, lane.slots) for lane in pool.lanes()] == [("default", "jobs", 3)]
    pool._register(TaskDefinition("pipe", _other), lane="pipelines")
    assert [(lane.name, lane.queue_name, lane.slots) for lane in pool.lanes()] == [
        ("default", "jobs", 3),
        ("pipelines", "jobs:pipelines", CONF.pipeline_concurrency),
    ]
    assert pool.lane_queue_name("pipelines") == "jobs:pipelines" == lane_queue_name("jobs", "pipelines")
    assert CONF.pipeline_concurrency == 64
    with pytest.raises(ValueError, match="unknown lane"):
        pool._register(TaskDefinition("other", _other), lane="express")


def test_registering_after_start_is_refused(backends: Backends, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "num_workers", 1)
    pool = ax.Pool(backends=backends, queue_name=f"q{uuid.uuid4().hex[:6]}")
    pool.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            pool.task("late")(_other)
        with pytest.raises(RuntimeError, match="already been started"):
            pool.start()
    finally:
        pool.shutdown(timeout=1)
    assert not pool.running


def test_channels() -> None:
    assert logs_channel("q") == "logs:q"
    assert control_channel("q") == "control:q"
    assert is_shutdown_for(shutdown_message("p1"), "p1")
    assert is_shutdown_for(shutdown_message(None), "p1")  # every pool on the queue
    assert not is_shutdown_for(shutdown_message("p2"), "p1")
    assert not is_shutdown_for("not json", "p1")


def test_forwarded_records_are_reemitted_through_the_users_config(caplog: pytest.LogCaptureFixture) -> None:
    forwarder = LogForwarder(worker_index=3)
    logger = logging.getLogger("myapp.agents")
    record = logger.makeRecord("myapp.agents", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    forwarder.emit(record)
    data = forwarder._buffer.popleft()
    assert json.loads(data)["message"] == "hello world"
    with caplog.at_level(logging.INFO):
        emit_worker_record(data)
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("myapp.agents", "WARNING", "[Worker 3] hello world")
    ]
    caplog.clear()
    logging.getLogger("myapp.agents").setLevel(logging.ERROR)
    try:
        emit_worker_record(data)  # below the level the main process configured: dropped
    finally:
        logging.getLogger("myapp.agents").setLevel(logging.NOTSET)
    assert caplog.records == []


def test_install_forwarder_forwards_each_record_once() -> None:
    root = logging.getLogger()
    quiet = logging.getLogger("test_pool_units.quiet")
    saved = (list(root.handlers), list(quiet.handlers), quiet.propagate)
    try:
        root.addHandler(logging.NullHandler())
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        forwarder = install_forwarder(0)
        assert root.handlers == [forwarder] and quiet.handlers == [forwarder]
        logging.getLogger("test_pool_units.loud").warning("one")
        quiet.warning("two")
        assert [json.loads(d)["message"] for d in forwarder._buffer] == ["one", "two"]
    finally:
        root.handlers[:] = saved[0]
        quiet.handlers[:] = saved[1]
        quiet.propagate = saved[2]


def _per_task_record(message: str, name: str) -> logging.LogRecord:
    logger = logging.getLogger("agentexec.worker")
    return logger.makeRecord("agentexec.worker", logging.INFO, __file__, 1, message, (name,), None)


def test_a_worker_prints_the_per_task_lines_itself_when_the_handlers_allow(tmp_path: Path) -> None:
    """``Processing task`` / ``Task completed`` do not cross to the main process when every
    handler that prints them may write from the worker (a plain stream or file handler): they
    are written by the worker, prefixed and formatted as the main process would, whole lines
    of at most PIPE_BUF bytes per write; any other record is still relayed."""
    ours = logging.getLogger("agentexec")
    saved = (list(ours.handlers), ours.level, ours.propagate)
    out = (tmp_path / "out.txt").open("w")
    try:
        ours.handlers[:] = []
        plain = logging.StreamHandler(out)
        plain.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        ours.addHandler(plain)
        ours.setLevel(logging.INFO)
        ours.propagate = False  # pytest's own capture handlers sit on the root logger
        found = printers("agentexec.worker", logging.INFO)
        assert found == [plain]
        forwarder = LogForwarder(worker_index=2, printers=found)
        for i in range(200):
            forwarder.emit(_per_task_record("Processing task: %s", f"job{i}"))
            forwarder.emit(_per_task_record("Task completed: %s", f"job{i}"))
        forwarder.emit(_per_task_record("Task %s went oddly", "job0"))  # not a per-task line
        assert [json.loads(d)["message"] for d in forwarder._buffer] == ["Task job0 went oddly"]
        writes: list[str] = []
        real_write = out.write
        out.write = lambda text: writes.append(text) or real_write(text)  # type: ignore[method-assign]
        forwarder.write_printed()
        out.flush()
        lines = (tmp_path / "out.txt").read_text().splitlines()
        assert lines[:2] == ["INFO [Worker 2] Processing task: job0", "INFO [Worker 2] Task completed: job0"]
        assert len(lines) == 400 and lines[-1] == "INFO [Worker 2] Task completed: job199"
        assert len(writes) > 1 and all(len(w) <= WRITE_CHARS and w.endswith("\n") for w in writes)

        # JSON lines say which worker and which task, as the main process's would
        plain.setFormatter(JsonFormatter())
        forwarder.emit(_per_task_record("Task completed: %s", "jobj"))
        forwarder.write_printed()
        out.flush()
        last = json.loads((tmp_path / "out.txt").read_text().splitlines()[-1])
        assert (last["message"], last["worker"]) == ("[Worker 2] Task completed: jobj", 2)

        # a handler the worker may not write through: the lines go to the main process
        ours.addHandler(logging.handlers.RotatingFileHandler(tmp_path / "rot.log"))
        assert printers("agentexec.worker", logging.INFO) is None
        ours.handlers[:] = [logging.StreamHandler(__import__("io").StringIO())]  # no descriptor
        assert printers("agentexec.worker", logging.INFO) is None
        relayed = LogForwarder(worker_index=2, printers=None)
        relayed.emit(_per_task_record("Processing task: %s", "job0"))
        assert [json.loads(d)["message"] for d in relayed._buffer] == ["Processing task: job0"]
    finally:
        for handler in ours.handlers:
            handler.close()
        ours.handlers[:], ours.level, ours.propagate = saved
        out.close()


def test_cli_parser_and_pool_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert "agentexec.cli.run" in COMMAND_MODULES
    args = build_parser().parse_args(["run", "app:pool", "--workers", "2", "--concurrency", "8", "--create-tables"])
    assert (args.target, args.workers, args.concurrency, args.create_tables) == ("app:pool", 2, 8, True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "app:pool", "--workers", "0"])
    name = f"cli_app_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{name}.py").write_text(
        "import agentexec as ax\n"
        "from agentexec.runtime import build_backends\n"
        "pool = ax.Pool(backends=build_backends({k: 'memory://cli' for k in "
        "('queue', 'results', 'events', 'activity')}))\n"
        "not_a_pool = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    try:
        assert isinstance(load_pool(f"{name}:pool"), ax.Pool)
        with pytest.raises(LookupError, match="pools defined there: pool"):
            load_pool(f"{name}:missing")
        with pytest.raises(TypeError, match=r"not an ax\.Pool"):
            load_pool(f"{name}:not_a_pool")
        with pytest.raises(ValueError, match="MODULE:POOL"):
            load_pool(name)
        assert main(["run", f"{name}:missing"]) == 2
        assert "pools defined there" in capsys.readouterr().err
    finally:
        sys.modules.pop(name, None)
        set_backends(None)


def test_cli_without_a_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "run" in capsys.readouterr().err



@pytest.mark.anyio
async def test_a_task_aborted_before_its_first_step_goes_back_with_its_slot(backends: Backends) -> None:
    """The worker runs tasks in plain asyncio tasks it tracks itself: one cancelled before it
    ever ran (an abort right after the reserve) still frees its slot and gives its task back."""
    import anyio

    from agentexec.lanes import Lane
    from agentexec.worker.consumer import Worker
    from agentexec.worker.sink import WorkerSink
    from agentexec.worker.writer import ActivityWriter

    queue = f"q{uuid.uuid4().hex[:8]}"

    ran: list[UUID] = []

    async def handler(agent_id: UUID, context: Ctx) -> None:
        ran.append(agent_id)

    worker = Worker(
        index=0, consumer_id="c", pool_id="p", queue_name=queue, lanes=[Lane("default", queue, 1)],
        definitions={"job": TaskDefinition("job", handler)}, backends=backends,
    )
    task = await ax.enqueue("job", Ctx(), queue_name=queue)
    lease = await backends.queue.reserve(queue, "c", 1.0)
    assert lease is not None and await backends.queue.length(queue) == 0
    writer = ActivityWriter(backends.activity, backends.results, backends.queue)
    worker.sink = WorkerSink(writer)
    slots = anyio.Semaphore(1)
    await slots.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        worker._start(lease, slots)
        worker.abort()  # no await since the start: the run has not taken a step
        await worker._runs_done()
        await writer.close()
    assert not ran
    assert slots.value == 1
    assert await backends.queue.length(queue) == 1
    detail = ax.activity.detail(task.agent_id)
    assert detail is not None and detail.status is ax.activity.Status.QUEUED


class _Sent:
    """An events backend that notes when each logs message arrives."""

    def __init__(self) -> None:
        self.at: list[tuple[float, str]] = []

    async def publish(self, channel: str, data: str) -> str | None:
        import time

        self.at.append((time.monotonic(), data))
        return None


@pytest.mark.anyio
async def test_a_warning_or_an_error_is_sent_without_lingering(monkeypatch: pytest.MonkeyPatch) -> None:
    """INFO records wait up to LINGER for company (one message for many); a warning or an
    error goes at once: a worker about to die (``os._exit`` in a handler) would take it along."""
    import time

    import anyio

    from agentexec.worker import logs

    monkeypatch.setattr(logs, "LINGER", 30.0)
    forwarder = LogForwarder(worker_index=0)
    sent = _Sent()
    logger = logging.getLogger("myapp")
    async with anyio.create_task_group() as tg:
        tg.start_soon(forwarder.publish, sent, "logs:q")
        await anyio.sleep(0.05)
        forwarder.emit(logger.makeRecord("myapp", logging.INFO, __file__, 1, "chatty", (), None))
        await anyio.sleep(0.3)
        assert sent.at == []  # lingering: the INFO record waits for more
        start = time.monotonic()
        forwarder.emit(logger.makeRecord("myapp", logging.ERROR, __file__, 1, "boom", (), None))
        with anyio.fail_after(5):
            while not sent.at:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert sent.at[0][0] - start < 1.0
    assert [r["message"] for r in json.loads(sent.at[0][1])] == ["chatty", "boom"]


@pytest.mark.anyio
async def test_printed_per_task_lines_linger_and_go_out_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-task lines a worker prints itself wait up to LINGER for company, as relayed
    records do, without a turn of the forwarder per line (a turn each cost ~20 us of worker
    CPU per task with handlers that await); a full batch goes at once."""
    import anyio

    from agentexec.worker import logs

    monkeypatch.setattr(logs, "LINGER", 30.0)
    monkeypatch.setattr(logs, "LINGER_RECORDS", 5)
    handler = logging.StreamHandler(__import__("io").StringIO())
    written: list[int] = []
    forwarder = LogForwarder(worker_index=0, printers=[handler])
    real = forwarder.write_printed

    def counting() -> None:
        written.append(len(forwarder._printed))
        real()

    forwarder.write_printed = counting  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(forwarder.publish, _Sent(), "logs:q")
        await anyio.sleep(0.05)
        for i in range(3):
            forwarder.emit(_per_task_record("Processing task: %s", f"job{i}"))
            await anyio.sleep(0.01)
        await anyio.sleep(0.2)
        assert sum(written) == 0  # lingering: the lines wait for more
        for i in range(3, 5):
            forwarder.emit(_per_task_record("Processing task: %s", f"job{i}"))
        with anyio.fail_after(5):
            while not sum(written):
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert [n for n in written if n] == [5]
    assert handler.stream.getvalue().count("Processing task") == 5
