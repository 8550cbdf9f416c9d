"""``ax.Pool``: register task handlers, run them on worker processes, stop cleanly.

::

    pool = ax.Pool(engine=engine, database_url=DATABASE_URL)

    @pool.task("research")
    async def research(agent_id: UUID, context: ResearchContext) -> str: ...

    pool.run()          # blocks until SIGTERM/SIGINT; or pool.start() ... pool.shutdown()
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from agentexec import telemetry
from agentexec.activity.creates import CREATES
from agentexec.config import CONF
from agentexec.lanes import DEFAULT_LANE, Lane, check_lane, lane_queue_name
from agentexec.registry import add_pool
from agentexec.runtime import (
    Backends,
    build_backends,
    configured_urls,
    has_explicit_backends,
    set_backends,
)
from agentexec.schedule.pool_api import SchedulingMixin
from agentexec.task import MAX_QUEUE_NAME, TaskDefinition, check_name
from agentexec.worker import early_stop
from agentexec.worker.logs import ensure_console_logging
from agentexec.worker.process_supervisor import ProcessSupervisor
from agentexec.worker.supervisor import Supervisor, ThreadSupervisor

log = logging.getLogger("agentexec.worker")

H = TypeVar("H", bound=Callable[..., Any])


class Pool(SchedulingMixin):
    """Worker processes that run the tasks registered on this pool from its queue.

    ``engine`` is the SQLAlchemy engine for activity tracking; ``database_url`` is what each
    worker process connects with (default: the engine's URL). The queue, results and events
    come from ``CONF``: Redis when ``redis_url`` is set, else the database, else the embedded
    SQLite file. ``backends=`` (a :class:`agentexec.runtime.Backends`) supplies them explicitly.
    With in-process backends (``memory://``) the workers run on a thread of this process.
    """

    def __init__(
        self,
        engine: Any = None,
        database_url: str | None = None,
        queue_name: str | None = None,
        *,
        backends: Backends | None = None,
    ) -> None:
        if queue_name is not None and (not isinstance(queue_name, str) or not queue_name):
            raise TypeError(f"queue_name must be a non-empty str or None, got {queue_name!r}")
        if queue_name is not None:
            check_name("queue_name", queue_name, MAX_QUEUE_NAME)
        if database_url is not None and not isinstance(database_url, str):
            raise TypeError(f"database_url must be a str URL or None, got {type(database_url).__name__}")
        self.engine = engine
        self.database_url = database_url or _engine_url(engine)
        self.queue_name: str = queue_name or CONF.queue_name
        self.id = uuid.uuid4().hex[:8]
        #: task name -> definition, as the spec shows (``pool.tasks["research"]``)
        self.tasks: dict[str, TaskDefinition] = {}
        self._lanes: dict[str, str] = {}
        if backends is None:
            backends = build_backends(configured_urls(self.database_url), activity_source=engine)
        self.backends = backends
        rebind = getattr(backends.activity, "rebind_global_session", None)
        if engine is not None and callable(rebind):
            rebind()  # the original binds the global session to the pool's engine
        if not has_explicit_backends():
            # so ax.enqueue / ax.activity in this process use the same stores; a later pool may
            # take over (a suite building one pool per test), backends the user set stay
            set_backends(backends, explicit=False)
        self._supervisor: Supervisor | None = None
        self._finished = False
        add_pool(self)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Pool queue={self.queue_name!r} tasks={sorted(self.tasks)} {state}>"

    # -- registration ------------------------------------------------------------------------
    def task(
        self,
        name: str,
        *,
        timeout: float | timedelta | None = None,
        retries: int | None = None,
        backoff: float | timedelta | Callable[[int], float] | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        lock_key: str | None = None,
        max_concurrency: int | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated ``async def handler(agent_id: UUID, context: MyContext)``
        under ``name``; the context model is read from the ``context`` annotation.

        ``timeout``: seconds (or a ``timedelta``) the handler may run; past it the handler is
        cancelled and the task ends ERROR ``timed out after N s`` (default
        ``CONF.task_timeout``). ``retries``: runs again after a failure that is one of
        ``retry_on`` (default ``CONF.task_retries``), waiting ``backoff`` seconds before the
        first (default ``CONF.retry_backoff``), twice as long before each next, with jitter;
        or ``backoff(attempt) -> seconds``. ``lock_key``: a template over the context's fields
        (``"user:{user_id}"``); two runs with the same key never overlap, on any pool of the
        queue. ``max_concurrency``: at most N runs of this task at once, across every pool.
        See docs/execution-control.md."""

        def decorator(handler: H) -> H:
            self._register(TaskDefinition(
                name, handler, timeout=timeout, retries=retries, backoff=backoff, retry_on=retry_on,
                lock_key=lock_key, max_concurrency=max_concurrency,
            ))
            return handler

        return decorator

    def add_task(
        self,
        name: str,
        func: Callable[..., Any],
        *,
        context_type: type[BaseModel] | None = None,
        result_type: type[BaseModel] | None = None,
        timeout: float | timedelta | None = None,
        retries: int | None = None,
        backoff: float | timedelta | Callable[[int], float] | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        lock_key: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        """Register ``func`` under ``name`` without a decorator (the original agentexec's form):
        ``context_type`` when the handler's ``context`` is not annotated with it, and
        ``result_type``, the model ``ax.get_result`` rebuilds the value as (default: the return
        annotation, when it is a model); ``timeout``, ``retries``, ``backoff``, ``retry_on``,
        ``lock_key`` and ``max_concurrency`` as for :meth:`task`. A name taken on this pool raises ``ValueError``."""
        self._register(TaskDefinition(
            name, func, context_type, result_type,
            timeout=timeout, retries=retries, backoff=backoff, retry_on=retry_on,
            lock_key=lock_key, max_concurrency=max_concurrency,
        ))

    def _register(self, definition: TaskDefinition, lane: str = DEFAULT_LANE) -> None:
        """Register a definition on a lane (``"default"`` or ``"pipelines"``)."""
        check_lane(lane)
        if self._supervisor is not None:
            raise RuntimeError(
                f"cannot register task {definition.name!r}: the pool has already started, and "
                f"its workers only know the tasks registered before pool.start()/pool.run()"
            )
        existing = self.tasks.get(definition.name)
        if existing is not None and existing is not definition:
            raise ValueError(
                f"a task named {definition.name!r} is already registered on this pool "
                f"({existing.handler!r}); task names must be unique per pool"
            )
        self.tasks[definition.name] = definition
        self._lanes[definition.name] = lane

    # -- lanes ----------------------------------------------------------------------------------
    def lane_queue_name(self, lane: str = DEFAULT_LANE) -> str:
        """The queue the pool's workers take ``lane``'s tasks from."""
        return lane_queue_name(self.queue_name, lane)

    def lanes(self) -> list[Lane]:
        """The lanes the workers consume: always ``default``, plus each lane with a task."""
        extra = {self._lanes.get(n, DEFAULT_LANE) for n in self.tasks} - {DEFAULT_LANE}
        names = [DEFAULT_LANE, *sorted(extra)]
        return [Lane.of(self.queue_name, lane) for lane in names]

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._supervisor is not None and self._supervisor.alive

    def start(self) -> None:
        """Start the workers and return at once."""
        if self._supervisor is not None:
            raise RuntimeError("this pool has already been started; create a new Pool to start again")
        if not self.tasks:
            log.warning("Pool on %r starts with no registered tasks; use @pool.task(name)", self.queue_name)
        cls = ProcessSupervisor if self.backends.cross_process else ThreadSupervisor
        # activities this process enqueued are written first: the fork below must not copy the
        # writer thread while it is inside a database driver (its locks would stay held)
        CREATES.flush()
        # before the workers are forked, so they inherit what the instruments set up
        instruments = telemetry.instruments()
        self._supervisor = cls(self, CONF.num_workers, self.lanes())
        self._supervisor.start()
        for instrument in instruments:
            try:
                instrument.pool_started(self)
            except Exception:
                log.exception("instrument %s failed to start", type(instrument).__name__)
        atexit.register(self._at_exit)
        log.info(
            "Pool started: %d worker(s) on %r, %d task slot(s) each, tasks: %s",
            CONF.num_workers, self.queue_name, CONF.worker_concurrency, ", ".join(sorted(self.tasks)),
        )

    def run(self) -> None:
        """Start the workers and block until SIGTERM or SIGINT (Ctrl+C), then shut down
        gracefully. A second signal stops waiting for running tasks."""
        if self._finished:  # e.g. a module that calls pool.run() itself, then `agentexec run`
            return
        ensure_console_logging()
        stop = threading.Event()
        previous: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, frame: Any) -> None:
            if stop.is_set() and self._supervisor is not None:
                log.warning("Second signal: killing workers that are still running")
                self._supervisor.force()
            stop.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            if early_stop.REQUESTED.is_set():  # `agentexec run` was stopped while starting
                early_stop.REQUESTED.clear()
                log.info("Stop requested while starting: the pool does not start")
                return
            self.start()
            while not stop.wait(0.2):
                if not self.running:
                    break
            log.info("Stopping the pool")
            self.shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop the workers: each finishes its running tasks and takes no more; after ``timeout``
        seconds (``CONF.graceful_shutdown_timeout`` by default; 0 = now) the rest are killed and
        their tasks go back to the queue. Queued tasks stay queued for the next start."""
        supervisor = self._supervisor
        if supervisor is None or self._finished:
            return
        self.scheduler.stop()  # no new ticks while draining: they would run in a burst later
        supervisor.request_stop(CONF.graceful_shutdown_timeout if timeout is None else timeout)
        supervisor.join()
        self._finished = True
        for instrument in telemetry.instruments():
            try:
                instrument.pool_stopped(self)
            except Exception:
                log.exception("instrument %s failed to stop", type(instrument).__name__)
        try:
            atexit.unregister(self._at_exit)
        except Exception:
            pass
        if supervisor.error is not None:
            raise RuntimeError(f"the worker pool stopped on an error: {supervisor.error}") from supervisor.error
        log.info("Pool stopped")

    def _at_exit(self) -> None:
        self.shutdown()

    def _fresh_backends(self) -> Backends:
        """Backends for another event loop or process: rebuilt from the same URLs (the activity
        store from the same engine), or the very objects when they were given without URLs."""
        if self.backends.urls is None:
            return self.backends
        return build_backends(self.backends.urls, activity_source=self.engine)  # type: ignore[arg-type]


def _engine_url(engine: Any) -> str | None:
    url = getattr(engine, "url", None)
    if url is None:
        return None
    render = getattr(url, "render_as_string", None)
    return str(render(hide_password=False)) if callable(render) else str(url)
