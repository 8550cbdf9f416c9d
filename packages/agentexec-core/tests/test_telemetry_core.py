"""Core's report points (agentexec.telemetry), with a recording instrument and no third-party
library: what a task's life reports, the trace context in the envelope, and an instrument that
fails is dropped without failing a task. In-process pool on memory backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import anyio
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec import telemetry
from agentexec.config import CONF
from agentexec.runtime import Backends

pytestmark = pytest.mark.anyio


class Ctx(BaseModel):
    fail: bool = False


class _Span:
    def __init__(self, log: list[Any], name: str) -> None:
        self.log, self.name, self.attributes = log, name, {}

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def record_exception(self, exc: BaseException) -> None:
        self.attributes["exception"] = type(exc).__name__


class Recorder(telemetry.Instrument):
    def __init__(self, active: bool = True) -> None:
        self.events: list[tuple[str, dict[str, str]]] = []
        self.spans: list[tuple[str, str, dict[str, Any], Any]] = []
        self.parents: list[Mapping[str, str] | None] = []
        self._active = active

    def active(self) -> bool:
        return self._active

    def span(self, name: str, kind: str, attributes: Mapping[str, Any], parent: Any = None) -> Any:
        @contextmanager
        def opened() -> Iterator[_Span]:
            span = _Span([], name)
            span.attributes.update(attributes)
            self.parents.append(parent)
            try:
                yield span
            finally:
                self.spans.append((name, kind, span.attributes, parent))

        return opened()

    def carrier(self) -> dict[str, str] | None:
        return {"traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"}

    def count(self, event: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
        self.events.append((event, dict(labels)))

    def observe(self, event: str, value: float, labels: Mapping[str, str]) -> None:
        self.events.append((event, dict(labels)))


class Broken(telemetry.Instrument):
    def count(self, event: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
        raise RuntimeError("broken instrument")


@pytest.fixture
def instruments() -> Iterator[None]:
    before = list(telemetry.instruments())
    yield
    telemetry.use(*before)


async def test_a_task_life_reports_in_order_and_carries_its_trace(
    backends: Backends, instruments: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CONF, "num_workers", 1)
    recorder = Recorder()
    telemetry.use(Broken(), recorder)  # first: its failure must not cost the recorder a report
    queue = f"q{uuid.uuid4().hex[:8]}"
    pool = ax.Pool(queue_name=queue, backends=backends)

    @pool.task("job")
    async def job(agent_id: UUID, context: Ctx) -> str:
        if context.fail:
            raise ValueError("boom")
        return "ok"

    pool.start()
    try:
        with anyio.fail_after(20):
            ok = await ax.enqueue("job", Ctx(), queue_name=queue)
            assert await ax.get_result(ok, timeout=15) == "ok"
            bad = await ax.enqueue("job", Ctx(fail=True), queue_name=queue)
            with pytest.raises(ax.TaskFailedError):
                await ax.get_result(bad, timeout=15)
    finally:
        pool.shutdown(timeout=5)

    labels = {"task": "job", "queue": queue}
    assert [e for e, _ in recorder.events] == [
        "task.enqueued", "task.started", "task.completed", "task.duration",
        "task.enqueued", "task.started", "task.failed", "task.duration",
    ]
    assert all(got == labels for event, got in recorder.events if event != "task.duration")
    names = [(name, kind) for name, kind, _, _ in recorder.spans]
    assert names == [
        (f"send {queue}", telemetry.PRODUCER), ("process job", telemetry.CONSUMER),
        (f"send {queue}", telemetry.PRODUCER), ("process job", telemetry.CONSUMER),
    ]
    processed = [s for s in recorder.spans if s[0] == "process job"]
    assert [s[2]["agentexec.outcome"] for s in processed] == ["completed", "failed"]
    assert [s[2]["agentexec.agent_id"] for s in processed] == [str(ok.agent_id), str(bad.agent_id)]
    # the run continues the producer's trace: the envelope carried the carrier
    assert all(s[3] == recorder.carrier() for s in processed)
    # the instrument that raised was dropped at its first failure; the tasks did not notice
    assert [type(i) for i in telemetry.instruments()] == [Recorder]


async def test_nothing_is_reported_while_no_instrument_is_active(
    backends: Backends, instruments: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path's one check: an inactive instrument (OpenTelemetry with no provider) gets
    no call, and the envelope no trace."""
    monkeypatch.setattr(CONF, "num_workers", 1)
    recorder = Recorder(active=False)
    telemetry.use(recorder)
    pool = ax.Pool(queue_name=f"q{uuid.uuid4().hex[:8]}", backends=backends)

    @pool.task("job")
    async def job(agent_id: UUID, context: Ctx) -> str:
        return "ok"

    pool.start()
    try:
        with anyio.fail_after(20):
            task = await ax.enqueue("job", Ctx(), queue_name=pool.queue_name)
            assert await ax.get_result(task, timeout=15) == "ok"
    finally:
        pool.shutdown(timeout=5)
    assert recorder.events == [] and recorder.spans == []


def test_an_idle_instrument_is_asked_until_it_observes(instruments: None) -> None:
    """``on()`` asks an instrument that was idle when loaded (OpenTelemetry before the
    application sets its provider) until it observes, then asks nothing more."""
    recorder = Recorder(active=False)
    telemetry.use(recorder)
    assert telemetry.on() is False
    recorder._active = True
    assert telemetry.on() is True
    recorder._active = False
    assert telemetry.on() is True  # settled: the instrument's own calls skip what it can't observe
    telemetry.use()
    assert telemetry.on() is False
