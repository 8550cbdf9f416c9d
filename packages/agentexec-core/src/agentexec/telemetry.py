"""Where core reports what happens (spans, counts, durations) to the instruments plugins provide.

Core never imports OpenTelemetry or prometheus-client: an instrument is an object a plugin
returns from the ``agentexec_instruments`` hook (see :mod:`agentexec.hookspecs`), and
``agentexec-telemetry`` ships two (``agentexec[otel]``, ``agentexec[prometheus]``). With none
installed, or none configured, every call here is one check of an empty list.

The points core reports, in order of a task's life (names are the ``event`` of
:meth:`Instrument.count` and :meth:`Instrument.observe`; labels in brackets):

- ``task.enqueued`` [task, queue] and a ``send`` span (producer), whose trace context travels in
  the envelope (``Envelope.trace``);
- ``task.started`` [task, queue], ``task.retried`` [task, queue] (a run after the first), and a
  ``process`` span (consumer) linked to the producer's;
- ``task.completed`` / ``task.failed`` / ``task.cancelled`` [task, queue] and
  ``task.duration`` (seconds) [task, queue, outcome];
- ``pipeline step`` spans, ``agent run`` / ``agent turn`` spans from the runners;
- ``tokens`` [model, kind] and ``cost`` (USD) [model] from the runners;
- ``worker.restarted`` [queue] from the pool.

Instruments are loaded once per process, the first time something is reported; a forked worker
inherits its pool's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agentexec.task import Task

log = logging.getLogger("agentexec.telemetry")

#: span kinds, as OpenTelemetry names them
PRODUCER = "producer"
CONSUMER = "consumer"
INTERNAL = "internal"
CLIENT = "client"


class Span(Protocol):
    """What core does with an open span."""

    def set_attribute(self, key: str, value: Any) -> None: ...

    def record_exception(self, exc: BaseException) -> None: ...


class Instrument:
    """Base class of what an ``agentexec_instruments`` plugin returns: every method does
    nothing; override what you observe. Methods are called in the hot path: keep them cheap,
    and never raise (a failing instrument is logged once and dropped)."""

    #: True for an instrument that serves ``/metrics`` from a pool (``--metrics-port``)
    serves_metrics: bool = False

    def active(self) -> bool:
        """Whether it observes anything right now (an OpenTelemetry instrument with no tracer
        provider set does not). Asked once when the instruments are loaded (or set with
        :func:`use`); one that says False is asked again at each :func:`on` until it says True
        (the application may set a provider later), so keep it to an attribute read or two."""
        return True

    def span(
        self,
        name: str,
        kind: str,
        attributes: Mapping[str, Any],
        parent: Mapping[str, str] | None = None,
    ) -> Any:
        """A context manager that opens a span and yields a :class:`Span`, or ``None`` to skip.

        ``parent`` is a trace context carried across processes (what :meth:`carrier` gave the
        producer): the span continues that trace."""
        return None

    def begin(self, name: str, kind: str, attributes: Mapping[str, Any]) -> Any:
        """A span opened now and ended by the caller (``.end()``), for spans that start and end
        in different callbacks (an agent's model turn); a child of the current span. It has the
        methods of :class:`Span` and ``end()``; ``None`` to skip."""
        return None

    def carrier(self) -> dict[str, str] | None:
        """The current trace context as text (W3C ``traceparent``), to travel in an envelope."""
        return None

    def count(self, event: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
        """``event`` happened ``amount`` times."""

    def observe(self, event: str, value: float, labels: Mapping[str, str]) -> None:
        """A measurement (a duration in seconds, a cost)."""

    def pool_started(self, pool: Any) -> None:
        """A pool's main process started its workers (``pool.start()``)."""

    def pool_stopped(self, pool: Any) -> None:
        """A pool's workers have stopped."""


_instruments: list[Instrument] | None = None
#: some instrument observes: what :func:`on` answers without asking any instrument
_on = False
#: the instruments that did not observe when last asked (OpenTelemetry installed, no provider
#: set yet): each :func:`on` asks only these, once ``_on`` is False
_idle: tuple[Instrument, ...] = ()


def instruments() -> list[Instrument]:
    """This process's instruments (loaded through the plugins on first use)."""
    if _instruments is None:
        return load()
    return _instruments


def on() -> bool:
    """Whether any instrument observes: the hot path's one check.

    Once one does, True with no further question (an instrument that stops observing then
    opens no span and counts nothing itself); until then, one ``active()`` per idle instrument
    (none with nothing installed, one attribute read for an unconfigured OpenTelemetry)."""
    if _on:
        return True
    if _instruments is None:
        load()
        return _on
    for instrument in _idle:
        try:
            woke = instrument.active()
        except Exception:
            _drop(instrument, "active")
            return _on
        if woke:
            _settle(list(_instruments))
            return _on
    return False


def _settle(found: list[Instrument]) -> None:
    """Make ``found`` this process's instruments, each asked once whether it observes (at load,
    use, drop, and when an idle one starts to)."""
    global _instruments, _on, _idle
    idle: list[Instrument] = []
    for instrument in list(found):
        try:
            quiet = not instrument.active()
        except Exception:
            log.exception("instrument %s failed in active; it is dropped", type(instrument).__name__)
            found.remove(instrument)
            continue
        if quiet:
            idle.append(instrument)
    _idle = tuple(idle)
    _on = len(idle) < len(found)
    _instruments = found


def load() -> list[Instrument]:
    """(Re)load the instruments: after changing the configuration they read (``metrics_port``)."""
    from agentexec.plugins import get_registry

    found: list[Instrument] = []
    try:
        specs = get_registry().instruments()
    except Exception:
        log.exception("listing the instruments failed; running without them")
        specs = {}
    for name, spec in specs.items():
        try:
            instrument = spec.load()
        except Exception:
            log.exception("instrument %r failed to load; running without it", name)
            continue
        if instrument is not None:
            found.append(instrument)
    _settle(found)
    return found


def use(*extra: Instrument) -> None:
    """Replace this process's instruments (tests, or an application wiring its own)."""
    _settle(list(extra))


def _drop(instrument: Instrument, what: str) -> None:
    log.exception("instrument %s failed in %s; it is dropped", type(instrument).__name__, what)
    if _instruments is not None and instrument in _instruments:
        # a new list: a report iterating the old one goes on to the next instrument
        _settle([other for other in _instruments if other is not instrument])


def count(event: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
    for instrument in instruments():
        try:
            instrument.count(event, labels, amount)
        except Exception:
            _drop(instrument, event)


def observe(event: str, value: float, labels: Mapping[str, str]) -> None:
    for instrument in instruments():
        try:
            instrument.observe(event, value, labels)
        except Exception:
            _drop(instrument, event)


def carrier() -> dict[str, str] | None:
    """The current trace context to put in an envelope (None: no tracing configured)."""
    for instrument in instruments():
        try:
            found = instrument.carrier()
        except Exception:
            _drop(instrument, "carrier")
            continue
        if found:
            return found
    return None


class _Spans:
    """The spans of every instrument, as one."""

    __slots__ = ("spans",)

    def __init__(self, spans: list[Any]) -> None:
        self.spans = spans

    def set_attribute(self, key: str, value: Any) -> None:
        for span in self.spans:
            span.set_attribute(key, value)

    def record_exception(self, exc: BaseException) -> None:
        for span in self.spans:
            span.record_exception(exc)


@contextmanager
def span(
    name: str,
    kind: str = INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    parent: Mapping[str, str] | None = None,
) -> Iterator[_Spans]:
    """Open a span on every instrument that traces; the handle sets attributes on all of them.

    An exception leaving the block is recorded on the spans and passes through."""
    found = instruments()
    if not found:
        yield _NO_SPANS
        return
    with ExitStack() as stack:
        opened: list[Any] = []
        for instrument in found:
            try:
                manager = instrument.span(name, kind, attributes or {}, parent)
                if manager is not None:
                    opened.append(stack.enter_context(manager))
            except Exception:
                _drop(instrument, "span")
        yield _Spans(opened)


_NO_SPANS = _Spans([])


class Begun(_Spans):
    """Spans opened by :func:`begin`; ``end()`` ends them all."""

    __slots__ = ()

    def end(self) -> None:
        for opened in self.spans:
            try:
                opened.end()
            except Exception:
                log.exception("ending a span failed")


def begin(name: str, kind: str = INTERNAL, attributes: Mapping[str, Any] | None = None) -> Begun:
    """Open a span (a child of the current one) that the caller ends with ``.end()``."""
    opened: list[Any] = []
    for instrument in instruments():
        try:
            found = instrument.begin(name, kind, attributes or {})
        except Exception:
            _drop(instrument, "begin")
            continue
        if found is not None:
            opened.append(found)
    return Begun(opened)


@contextmanager
def sending(queue_name: str, tasks: Sequence[Task]) -> Iterator[dict[str, str] | None]:
    """Around the push of ``tasks`` (one enqueue, or one batch): a ``send`` span (messaging
    conventions) that yields the trace context each envelope must carry, then
    ``task.enqueued`` counts once the push has succeeded."""
    first = tasks[0]
    attributes: dict[str, Any] = {
        "messaging.system": "agentexec",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": queue_name,
        "agentexec.task.name": first.task_name,
    }
    if len(tasks) == 1:
        attributes["messaging.message.id"] = str(first.agent_id)
        attributes["agentexec.agent_id"] = str(first.agent_id)
    else:
        attributes["messaging.batch.message_count"] = len(tasks)
    with span(f"send {queue_name}", PRODUCER, attributes):
        yield carrier()
    for task in tasks:
        count("task.enqueued", {"task": task.task_name, "queue": queue_name})


def labels_of(task: Task) -> dict[str, str]:
    return {"task": task.task_name, "queue": task.queue_name or ""}


@contextmanager
def task_run(task: Task) -> Iterator[None]:
    """Around one run of ``task`` in its lifecycle: its ``process`` span (continuing the
    producer's trace), its start/outcome counts and its duration."""
    labels = labels_of(task)
    count("task.started", labels)
    if task.attempts:
        count("task.retried", labels)
    attributes = {
        "messaging.system": "agentexec",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": labels["queue"],
        "messaging.message.id": str(task.agent_id),
        "agentexec.task.name": task.task_name,
        "agentexec.agent_id": str(task.agent_id),
        "agentexec.attempt": task.attempts + 1,
    }
    started = time.perf_counter()
    outcome = "completed"
    with span(f"process {task.task_name}", CONSUMER, attributes, task.trace) as spans:
        try:
            yield
        except BaseException as exc:
            import anyio

            outcome = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else "failed"
            raise
        finally:
            spans.set_attribute("agentexec.outcome", outcome)
            count(f"task.{outcome}", labels)
            observe("task.duration", time.perf_counter() - started, {**labels, "outcome": outcome})
