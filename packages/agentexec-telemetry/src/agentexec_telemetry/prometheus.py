"""The Prometheus instrument: one ``/metrics`` endpoint for a whole multi-process pool.

A pool's processes are forks of its main process, so the instrument runs prometheus-client in
its multiprocess mode: every process (the main one, each worker, each replacement) writes its
counts to memory-mapped files in one directory (``CONF.metrics_dir``, or a fresh temporary one
per pool), and the main process's ``/metrics`` (``CONF.metrics_port``) adds them up. Nothing
crosses a process boundary per task; a worker that dies keeps its counts.

Queue depth, tasks in flight, dead letters and live workers are *collected*: read from the
queue backend and the pool when ``/metrics`` is scraped, never counted in the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from agentexec.config import CONF
from agentexec.telemetry import Instrument

log = logging.getLogger("agentexec.telemetry")

#: where prometheus-client's multiprocess mode keeps its files (its own variable)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: seconds of task duration buckets: agent work runs from milliseconds to many minutes
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def _directory() -> tuple[str, bool]:
    """The multiprocess directory, set for this process and the ones it forks; True when it was
    made here (and is removed when the pool stops)."""
    chosen = CONF.metrics_dir or os.environ.get(MULTIPROC_ENV)
    made = False
    if not chosen:
        chosen, made = tempfile.mkdtemp(prefix="agentexec-metrics-"), True
    os.makedirs(chosen, exist_ok=True)
    os.environ[MULTIPROC_ENV] = chosen
    return chosen, made


class PrometheusInstrument(Instrument):
    serves_metrics = True

    def __init__(self) -> None:
        self.directory, self._made = _directory()
        from prometheus_client import Counter, Histogram, values

        # prometheus-client picks its value class when first imported: if that was before the
        # directory was set, switch to the multiprocess one (metrics made below use it)
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        # registry=None: in multiprocess mode /metrics reads the files, not a registry (and a
        # second instrument in one process would collide in the default one)
        task = ["task", "queue"]
        self._counters: dict[str, Any] = {
            "task.enqueued": Counter("agentexec_tasks_enqueued", "Tasks enqueued.", task, registry=None),
            "task.started": Counter("agentexec_tasks_started", "Task runs started.", task, registry=None),
            "task.completed": Counter("agentexec_tasks_completed", "Task runs that completed.", task, registry=None),
            "task.failed": Counter("agentexec_tasks_failed", "Task runs that failed.", task, registry=None),
            "task.retried": Counter(
                "agentexec_tasks_retried", "Task runs after the first (a redelivery or a retry).", task
            ),
            "task.cancelled": Counter(
                "agentexec_tasks_cancelled", "Task runs cancelled (aborted, or given back at shutdown).", task
            ),
            "worker.restarted": Counter(
                "agentexec_worker_restarts", "Worker processes replaced after dying.", ["queue"]
            ),
            "tokens": Counter("agentexec_tokens", "Tokens used by agent runs.", ["model", "kind"], registry=None),
            "cost": Counter("agentexec_cost_usd", "Estimated cost of agent runs, in US dollars.", ["model"], registry=None),
        }
        self._duration = Histogram(
            "agentexec_task_duration_seconds", "Duration of task runs.", ["task", "queue", "outcome"],
            buckets=DURATION_BUCKETS, registry=None,
        )
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._server: Any = None
        self._sampler: _Sampler | None = None

    def _child(self, metric: Any, event: str, labels: Mapping[str, str]) -> Any:
        key = (event, tuple(labels.values()))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(**labels)
        return child

    def count(self, event: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
        metric = self._counters.get(event)
        if metric is not None:
            self._child(metric, event, labels).inc(amount)

    def observe(self, event: str, value: float, labels: Mapping[str, str]) -> None:
        if event == "task.duration":
            self._child(self._duration, event, labels).observe(value)
        elif event == "cost":
            self._child(self._counters["cost"], event, labels).inc(value)

    # -- the pool's endpoint ----------------------------------------------------------------
    def pool_started(self, pool: Any) -> None:
        if CONF.metrics_port is None or self._server is not None:
            return
        from prometheus_client import CollectorRegistry, start_http_server

        from agentexec_telemetry.metric_files import WholeFilesCollector

        registry = CollectorRegistry()
        WholeFilesCollector(registry, path=self.directory)
        self._sampler = _Sampler(pool)
        registry.register(_PoolCollector(pool, self._sampler))
        self._server, _ = start_http_server(CONF.metrics_port, registry=registry)
        log.info("Serving Prometheus metrics on port %d at /metrics", CONF.metrics_port)

    def pool_stopped(self, pool: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        if self._made:
            shutil.rmtree(self.directory, ignore_errors=True)


class _Sampler:
    """Reads the queue's stats for a scrape, on its own event loop and backends (the scrape
    runs on the HTTP server's thread, the pool's connections belong to the pool's loop)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backends: Any = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="agentexec-metrics", daemon=True).start()
                self._loop = loop
            return self._loop

    async def _read(self) -> list[Any]:
        if self._backends is None:
            self._backends = self.pool._fresh_backends()
        return [await self._backends.queue.stats(lane.queue_name) for lane in self.pool.lanes()]

    def stats(self, timeout: float = 5.0) -> list[Any]:
        future = asyncio.run_coroutine_threadsafe(self._read(), self._ensure_loop())
        return future.result(timeout)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._backends is not None and self.pool.backends.urls is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._backends.aclose(), loop).result(5)
            except Exception:
                log.debug("closing the metrics connections failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)


class _PoolCollector:
    """Gauges read at scrape time: queue depth, in flight, dead letters, live workers."""

    def __init__(self, pool: Any, sampler: _Sampler) -> None:
        self.pool = pool
        self.sampler = sampler

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        workers = GaugeMetricFamily("agentexec_workers", "Live worker processes of the pool.", labels=["queue"])
        supervisor = getattr(self.pool, "_supervisor", None)
        pids = getattr(supervisor, "pids", None)
        live = len(pids() if callable(pids) else pids or []) if supervisor is not None else 0
        workers.add_metric([self.pool.queue_name], live)
        yield workers
        depth = GaugeMetricFamily(
            "agentexec_queue_depth", "Tasks waiting in the queue.", labels=["queue", "priority"]
        )
        in_flight = GaugeMetricFamily(
            "agentexec_tasks_in_flight", "Tasks taken by a worker and not yet acknowledged.", labels=["queue"]
        )
        dead = GaugeMetricFamily("agentexec_dead_letters", "Tasks in the dead-letter list.", labels=["queue"])
        try:
            stats = self.sampler.stats()
        except Exception as exc:
            log.warning("reading the queue for /metrics failed: %s", exc)
            stats = []
        for item in stats:
            depth.add_metric([item.queue_name, "high"], item.high)
            depth.add_metric([item.queue_name, "low"], item.low)
            in_flight.add_metric([item.queue_name], item.in_flight)
            dead.add_metric([item.queue_name], item.dead)
        yield depth
        yield in_flight
        yield dead
