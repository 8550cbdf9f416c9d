"""Registers the instruments. Imports nothing heavy: OpenTelemetry and prometheus-client are
imported when an instrument loads, and only when installed (and, for metrics, configured)."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from typing import Any

from agentexec.hookspecs import InstrumentSpec, hookimpl


def _otel() -> Any:
    if importlib.util.find_spec("opentelemetry.trace") is None:
        return None
    from agentexec_telemetry.otel import OpenTelemetryInstrument

    return OpenTelemetryInstrument()


def _prometheus() -> Any:
    from agentexec.config import CONF

    if CONF.metrics_port is None and CONF.metrics_dir is None:
        return None  # not configured: no metric is counted anywhere
    if importlib.util.find_spec("prometheus_client") is None:
        logging.getLogger("agentexec.telemetry").warning(
            "AGENTEXEC_METRICS_PORT/AGENTEXEC_METRICS_DIR are set but prometheus-client is not "
            "installed: no metrics. Install it: pip install 'agentexec[prometheus]'"
        )
        return None
    from agentexec_telemetry.prometheus import PrometheusInstrument

    return PrometheusInstrument()


@hookimpl
def agentexec_instruments() -> Iterator[InstrumentSpec]:
    yield InstrumentSpec("opentelemetry", _otel, "OpenTelemetry traces (agentexec[otel])")
    yield InstrumentSpec("prometheus", _prometheus, "Prometheus metrics (agentexec[prometheus])")
