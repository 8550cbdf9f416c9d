"""agentexec's observability instruments: OpenTelemetry (:mod:`.otel`) and Prometheus
(:mod:`.prometheus`), registered through the ``agentexec_instruments`` hook."""
