"""Faults on the finish path (issue 14): what is cleaned, what is isolated, what is waited out.

The worker's writer against in-memory backends wrapped to fail the way real ones do: a store
that refuses one line (PostgreSQL and a NUL byte), a results backend that refuses one outcome,
a backend that is unreachable for a while. The same code runs in worker processes; the
end-to-end tests (tests/e2e/test_pool_poison.py, test_pool_outages.py) run it on real servers.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.backends import Lease, LogEntry
from agentexec.config import CONF, Config, ConfigError, load
from agentexec.faults import Outage, clean_text, error_message, is_transient, unstorable_result
from agentexec.results import Outcome
from agentexec.runtime import Backends
from agentexec.task import Envelope
from agentexec.worker.writer import ActivityWriter

pytestmark = pytest.mark.anyio

HALF_EMOJI = json.loads('"\\ud83d"')


class Ctx(BaseModel):
    value: int = 0


@pytest.fixture
def bad_template() -> Iterator[None]:
    """``CONF.activity_message_error`` set to an unusable template around validation (which
    refuses it): pydantic replaces ``CONF.__dict__`` on every validated assignment, so it is
    restored in whichever dict is current at the end."""
    old = CONF.activity_message_error
    CONF.__dict__["activity_message_error"] = "Failed: {reason}"
    yield
    CONF.__dict__["activity_message_error"] = old


class Faulty:
    """A backend that fails the way a real one does: ``down`` calls fail with a connection
    error (transient), and a call whose data ``refuses`` matches fails for good."""

    def __init__(self, inner: Any, refuses: Any = None, down: int = 0, error: type[Exception] = LookupError) -> None:
        self._inner = inner
        self.refuses = refuses
        self.down = down
        self.error = error
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _check(self, items: Sequence[Any]) -> None:
        self.calls += 1
        if self.down > 0:
            self.down -= 1
            raise ConnectionRefusedError("connection refused")
        if self.refuses is not None and any(self.refuses(item) for item in items):
            raise self.error("the backend refuses this data")

    async def aappend_many(self, entries: Sequence[LogEntry]) -> None:
        self._check(entries)
        await self._inner.aappend_many(entries)

    async def set_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        self._check(items)
        await self._inner.set_many(items, ttl)

    async def ack_many(self, leases: Sequence[Lease]) -> None:
        self._check(leases)
        await self._inner.ack_many(leases)


# -- cleaning ------------------------------------------------------------------------------
def test_clean_text_replaces_lone_surrogates_strips_nul_and_caps() -> None:
    assert clean_text(f"half {HALF_EMOJI} of it") == "half \ufffd of it"
    assert clean_text("a\x00b") == "ab"
    assert clean_text("plain") == "plain"
    assert clean_text("😀 whole") == "😀 whole"
    assert clean_text("x" * 30, 10) == "x" * 10 + "… [20 more characters cut]"
    assert clean_text(ValueError("boom")) == "boom"
    clean_text(f"{HALF_EMOJI}\x00" * 3).encode("utf-8")  # storable


def test_an_unstorable_result_says_where_the_half_character_is() -> None:
    value = {"answer": ["fine", f"cut {HALF_EMOJI}"]}
    try:
        Outcome.ok("t", value).encode()
    except Exception as exc:
        reason = unstorable_result(exc, value)
    assert reason.startswith("its result cannot be stored: the result['answer'][1] (character 4) holds")
    assert "lone surrogate" in reason
    reason.encode("utf-8")


def test_the_error_line_falls_back_to_the_default_template() -> None:
    assert error_message("boom") == CONF.activity_message_error.format(error="boom")
    assert error_message("boom", "Failed: {reason}") == "Task failed with error: boom"


def test_a_template_assigned_around_validation_falls_back(bad_template: None) -> None:
    # validation keeps such a template out of CONF; assigned around it, the failure still shows
    assert error_message(f"a\x00b {HALF_EMOJI}") == "Task failed with error: ab \ufffd"


def test_transient_means_unreachable_unless_the_backend_says_otherwise() -> None:
    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError())
    assert not is_transient(ValueError("bad data")) and not is_transient(RuntimeError())

    class Says:
        def is_transient(self, exc: BaseException) -> bool:
            return isinstance(exc, RuntimeError)

    assert is_transient(RuntimeError(), Says()) and not is_transient(ConnectionError(), Says())


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agentexec.worker")
    outage = Outage("the activity store (X)", "waiting")
    assert outage.failed(ConnectionRefusedError("refused")) and not outage.failed(ConnectionError())
    assert outage.down and outage.ok() and not outage.ok()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "the activity store (X) is unreachable (ConnectionRefusedError: refused): waiting"
    assert messages[1].startswith("the activity store (X) is reachable again after ")
    assert len(messages) == 2


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("Task failed: {reason}", "unknown field {reason}: the only field allowed is {error}"),
        ("Task failed: {}", "unknown field {}: the only field allowed is {error}"),
        ("Task failed: {error.args}", "unknown field {error.args}"),
        ("Task failed: {error", "not a valid template: expected '}' before end of string"),
        ("Task failed: error}", "not a valid template: Single '}' encountered in format string"),
    ],
)
def test_a_bad_error_template_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, template: str, reason: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENTEXEC_ACTIVITY_MESSAGE_ERROR", template)
    with pytest.raises(ConfigError) as caught:
        load()
    assert str(caught.value).startswith(f"agentexec: AGENTEXEC_ACTIVITY_MESSAGE_ERROR={template!r} is invalid ({reason}")
    assert "expected text whose only field is `{error}`" in str(caught.value)


@pytest.mark.parametrize("template", ["{error}", "Failed ({error!r:.50})", "{{literal}} {error}", "No field."])
def test_good_error_templates_pass(template: str) -> None:
    assert Config(activity_message_error=template).activity_message_error == template


def test_messages_must_be_storable_and_assignment_is_checked_too() -> None:
    with pytest.raises(ValueError, match="NUL"):
        Config(activity_message_started="go\x00")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        Config(activity_message_complete=f"done {HALF_EMOJI}")
    with pytest.raises(ValueError, match="the only field allowed is"):
        CONF.activity_message_error = "{reason}"
    with pytest.raises(ValueError, match="more than the 200 allowed"):
        Config(queue_name="q" * 201)


def test_bad_task_and_queue_names_fail_at_registration() -> None:
    async def handler(agent_id: UUID, context: Ctx) -> None: ...

    with pytest.raises(ValueError, match="more than the 255 allowed"):
        ax.Pool(queue_name="ok", backends=None).task("t" * 256)(handler)
    with pytest.raises(ValueError, match="control character"):
        ax.Pool(queue_name="bad\nqueue")


# -- the writer ------------------------------------------------------------------------------
async def _lease(backends: Backends, queue: str) -> Lease:
    env = Envelope(agent_id=uuid.uuid4(), task_name="t", context={}, queue_name=queue)
    await backends.queue.push(env)
    lease = await backends.queue.reserve(queue, "c", 1.0)
    assert lease is not None
    return lease


async def test_a_refused_line_is_isolated_and_stored_cleaned(backends: Backends) -> None:
    """One line the store refuses (as PostgreSQL refuses a NUL byte) in a batch of 40: the
    others land, it lands cleaned. Before: the whole batch was retried forever."""
    store = Faulty(backends.activity, refuses=lambda e: "\x00" in e.message)
    ids = [await backends.activity.acreate("t", "queued") for _ in range(40)]
    writer = ActivityWriter(store, backends.results, backends.queue)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for i, agent_id in enumerate(ids):
            message = "a NUL\x00byte" if i == 17 else f"line {i}"
            writer.submit(LogEntry(agent_id, message, Status.RUNNING))
        with anyio.fail_after(5):
            await writer.close()
    lines = [(await backends.activity.adetail(a)).logs[-1].message for a in ids]  # type: ignore[union-attr]
    assert lines == [("a NULbyte" if i == 17 else f"line {i}") for i in range(40)]
    assert writer.health.accepting and store.calls < 20  # halves, not one call per line


async def test_a_line_refused_even_cleaned_is_replaced_by_a_note_keeping_its_status(backends: Backends) -> None:
    store = Faulty(backends.activity, refuses=lambda e: e.message == "poison")
    agent_id = await backends.activity.acreate("t", "queued")
    writer = ActivityWriter(store, backends.results, backends.queue)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.submit(LogEntry(agent_id, "poison", Status.COMPLETE, 100))
        with anyio.fail_after(5):
            await writer.close()
    detail = await backends.activity.adetail(agent_id)
    assert detail is not None and detail.status is Status.COMPLETE
    assert detail.logs[-1].message == (
        "(an activity line could not be stored: LookupError: the backend refuses this data)"
    )


async def test_a_store_that_refuses_everything_is_waited_out_not_dropped(
    backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    """A permanent-looking error for every line, even a plain note (tables missing, say): the
    fault is the store's, so the worker holds the line and takes no new task."""
    caplog.set_level(logging.WARNING, logger="agentexec.worker")
    store = Faulty(backends.activity, refuses=lambda e: True, error=RuntimeError)
    agent_id = await backends.activity.acreate("t", "queued")
    writer = ActivityWriter(store, backends.results, backends.queue)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.submit(LogEntry(agent_id, "line", Status.RUNNING))
        with anyio.fail_after(5):
            while writer.health.accepting:
                await anyio.sleep(0.01)
        store.refuses = None  # fixed
        with anyio.fail_after(10):
            await writer.close()
    detail = await backends.activity.adetail(agent_id)
    assert detail is not None and detail.logs[-1].message == "line"
    down = [r for r in caplog.records if "is unreachable" in r.getMessage()]
    assert len(down) == 1


async def test_an_outage_stops_new_tasks_until_writes_succeed_and_is_logged_once(
    backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentexec.worker")
    store = Faulty(backends.activity, down=6)
    results = Faulty(backends.results, down=4)
    queue = Faulty(backends.queue, down=3)
    ids = [await backends.activity.acreate("t", "queued") for _ in range(5)]
    writer = ActivityWriter(store, results, queue)  # type: ignore[arg-type]
    leases = [await _lease(backends, "q-outage") for _ in ids]
    blocked: list[bool] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for agent_id, lease in zip(ids, leases, strict=True):
            data = Outcome.ok("t", "v").encode()
            writer.submit(LogEntry(agent_id, "done", Status.COMPLETE, 100), outcome=(agent_id, data), ack=lease)
        await anyio.sleep(0.02)
        blocked.append(writer.health.accepting)
        with anyio.fail_after(20):
            await writer.health.ready()
            await writer.close()
    assert blocked == [False]
    assert store.down == results.down == queue.down == 0
    for agent_id in ids:
        assert await backends.results.get(agent_id) is not None
    assert (await backends.queue.stats("q-outage")).in_flight == 0
    messages = [r.getMessage() for r in caplog.records]
    for what in ("the activity store", "the results backend", "the queue"):
        assert sum(m.startswith(f"{what} (Faulty) is unreachable") for m in messages) == 1, messages
        assert sum(m.startswith(f"{what} (Faulty) is reachable again") for m in messages) == 1, messages


async def test_a_refused_outcome_is_replaced_by_the_failure_and_the_rest_are_stored(backends: Backends) -> None:
    big = Outcome.ok("t", "x" * 1000).encode()
    results = Faulty(backends.results, refuses=lambda item: len(item[1]) > 500, error=ValueError)
    writer = ActivityWriter(backends.activity, results, backends.queue)  # type: ignore[arg-type]
    ids = [uuid.uuid4() for _ in range(9)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for i, agent_id in enumerate(ids):
            writer.submit(None, outcome=(agent_id, big if i == 4 else Outcome.ok("t", i).encode()))
        with anyio.fail_after(5):
            await writer.close()
    stored = [Outcome.decode(await backends.results.get(a) or b"") for a in ids]
    assert [o.value for i, o in enumerate(stored) if i != 4] == [0, 1, 2, 3, 5, 6, 7, 8]
    assert stored[4].status == "error"
    assert stored[4].error == "its outcome could not be stored: ValueError: the backend refuses this data"


async def test_finished_tasks_waiting_for_their_ack_hold_the_worker_back(backends: Backends) -> None:
    queue = Faulty(backends.queue, down=1000)
    writer = ActivityWriter(backends.activity, backends.results, queue)  # type: ignore[arg-type]
    writer.health.max_unfinished = 3
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for _ in range(3):
            writer.submit(None, ack=await _lease(backends, "q-held"))
        assert not writer.health.accepting
        queue.down = 0
        with anyio.fail_after(10):
            await writer.health.ready()
            await writer.close()
    assert writer.health.accepting


# -- a pool on the in-process backends -------------------------------------------------------
async def test_poison_tasks_run_once_on_an_in_process_pool(
    backends: Backends, monkeypatch: pytest.MonkeyPatch, bad_template: None
) -> None:
    """The same lifecycle as in worker processes: a result with half a character and an
    error template assigned around validation each end ERROR once; the next task completes."""
    monkeypatch.setattr(CONF, "num_workers", 1)
    queue = f"q{uuid.uuid4().hex[:8]}"
    pool = ax.Pool(queue_name=queue, backends=backends)
    runs: list[int] = []

    @pool.task("t")
    async def handler(agent_id: UUID, context: Ctx) -> Any:
        runs.append(context.value)
        if context.value == 1:
            return {"text": f"cut {HALF_EMOJI}"}
        if context.value == 2:
            raise ValueError(f"bad {HALF_EMOJI}\x00")
        return context.value

    pool.start()
    try:
        tasks = [await ax.enqueue("t", Ctx(value=v), queue_name=queue) for v in (1, 2, 3)]
        with pytest.raises(ax.TaskFailedError, match=r"the result\['text'\] \(character 4\)"):
            await ax.get_result(tasks[0], timeout=10)
        with pytest.raises(ax.TaskFailedError, match="bad \ufffd"):
            await ax.get_result(tasks[1], timeout=10)
        assert await ax.get_result(tasks[2], timeout=10) == 3
    finally:
        pool.shutdown(timeout=5)
    assert sorted(runs) == [1, 2, 3]
    detail = ax.activity.detail(tasks[1].agent_id)
    assert detail is not None and detail.logs[-1].message == "Task failed with error: bad \ufffd"
    assert detail.status is Status.ERROR
    assert os.environ.get("AGENTEXEC_ACTIVITY_MESSAGE_ERROR") is None
