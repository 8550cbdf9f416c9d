"""The OpenTelemetry instrument, installed with no provider, makes ``telemetry.on()`` False
until the application sets one, after the instruments were loaded too. A fresh interpreter:
OpenTelemetry's global provider can be set once per process."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
from agentexec import telemetry
from agentexec_telemetry.otel import OpenTelemetryInstrument
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

telemetry.load()
assert [type(i) for i in telemetry.instruments()] == [OpenTelemetryInstrument], telemetry.instruments()
assert telemetry.on() is False
assert telemetry.carrier() is None
trace.set_tracer_provider(TracerProvider())
assert telemetry.on() is True
with trace.get_tracer("web").start_as_current_span("request"):
    carrier = telemetry.carrier()
assert carrier and carrier["traceparent"].startswith("00-"), carrier
print("ok")
"""


def test_on_follows_a_provider_set_after_load() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AGENTEXEC_METRICS", "OTEL_"))},
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
