"""agentexec-telemetry is a well-formed agentexec plugin whose discovery imports neither
OpenTelemetry nor prometheus-client."""

from __future__ import annotations

from agentexec.testing import PluginPackagingSuite


class TestTelemetryPackaging(PluginPackagingSuite):
    distribution = "agentexec-telemetry"
    heavy_modules = ("opentelemetry", "prometheus_client")
