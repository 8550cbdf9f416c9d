"""The OpenTelemetry instrument: spans for enqueues, task runs, pipeline steps and agent turns.

It uses the OpenTelemetry *API* only; the application configures the SDK (a
``TracerProvider`` and its exporters) as for any other library. Until it does, the instrument
opens no span: each report point is one read of the global tracer provider.

Queue spans follow the messaging semantic conventions: ``send <queue>`` (kind PRODUCER) around
the push, ``process <task>`` (kind CONSUMER) around the run, whose parent is the producer's
span (so one trace goes from the web request to the agent's turns) and which links to it too.
The trace context travels in the task's envelope as W3C ``traceparent``/``tracestate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentexec._version import __version__
from agentexec.telemetry import CLIENT, CONSUMER, INTERNAL, PRODUCER, Instrument
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, NoOpTracerProvider, ProxyTracerProvider, SpanKind

_KINDS = {
    PRODUCER: SpanKind.PRODUCER,
    CONSUMER: SpanKind.CONSUMER,
    INTERNAL: SpanKind.INTERNAL,
    CLIENT: SpanKind.CLIENT,
}


def configured() -> bool:
    """True once the application has set a real tracer provider."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


def _global_provider() -> Any:
    """The global provider once one is set, else None, with no lookup: the module attribute
    ``set_tracer_provider`` writes. ``get_tracer_provider()`` answers the same but reads
    ``os.environ`` on every call until a provider is set, and an unconfigured install asks at
    every report point. An API without that attribute falls back to the public call."""
    provider = getattr(trace, "_TRACER_PROVIDER", _MISSING)
    if provider is _MISSING:
        provider = trace.get_tracer_provider()
        return None if isinstance(provider, ProxyTracerProvider) else provider
    return provider


_MISSING = object()


class OpenTelemetryInstrument(Instrument):
    """Spans through the global tracer provider, or ``tracer_provider`` when given (tests, or
    an application that keeps agentexec's spans apart)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._fixed = tracer_provider
        self._provider: Any = None
        self._tracer: trace.Tracer | None = None
        if tracer_provider is None:
            # once: a provider named by OTEL_PYTHON_TRACER_PROVIDER is created and set here
            trace.get_tracer_provider()

    def _get_tracer(self) -> trace.Tracer | None:
        provider = self._fixed or _global_provider()
        if provider is self._provider:
            return self._tracer
        # set (or replaced) since the last span
        self._provider = provider
        if provider is None or isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
            self._tracer = None
        else:
            self._tracer = provider.get_tracer("agentexec", __version__)
        return self._tracer

    def active(self) -> bool:
        return self._get_tracer() is not None

    def span(
        self,
        name: str,
        kind: str,
        attributes: Mapping[str, Any],
        parent: Mapping[str, str] | None = None,
    ) -> Any:
        tracer = self._get_tracer()
        if tracer is None:
            return None
        if parent:
            context = propagate.extract(parent)
            producer = trace.get_current_span(context).get_span_context()
            links = [Link(producer)] if producer.is_valid else None
            return tracer.start_as_current_span(
                name, context=context, kind=_KINDS[kind], attributes=dict(attributes), links=links,
            )
        return tracer.start_as_current_span(name, kind=_KINDS[kind], attributes=dict(attributes))

    def begin(self, name: str, kind: str, attributes: Mapping[str, Any]) -> Any:
        tracer = self._get_tracer()
        if tracer is None:
            return None
        return tracer.start_span(name, kind=_KINDS[kind], attributes=dict(attributes))

    def carrier(self) -> dict[str, str] | None:
        if self._get_tracer() is None:
            return None
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier or None
