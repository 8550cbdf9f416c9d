"""The pool's main-process side: start workers, watch them, replace the dead, reap, stop.

Two flavours share one shape, a thread running an anyio loop:

- :class:`~agentexec.worker.process_supervisor.ProcessSupervisor` (cross-process backends):
  ``CONF.num_workers`` forked processes; it relays their logs, replaces a worker that dies (its
  in-flight tasks go back to the queue at once), and runs the reaper for leases of workers lost
  anywhere.
- :class:`ThreadSupervisor` (in-process backends such as ``memory://``): the workers run on the
  supervisor's own event loop, since other processes could not see the queue.

Shutdown, for both: workers are asked to finish their running tasks and take no more; after the
timeout the rest are killed (processes) or cancelled (in-process) and their tasks go back to
the queue. Tasks still queued stay queued for the next start.
"""

from __future__ import annotations

import abc
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from agentexec.backends import DurabilityCheck
from agentexec.lanes import Lane
from agentexec.runtime import Backends
from agentexec.worker.consumer import Worker
from agentexec.worker.reaping import reap, reap_consumer

if TYPE_CHECKING:
    from agentexec.worker.pool import Pool

log = logging.getLogger("agentexec.worker")

POLL = 0.05


class Supervisor(abc.ABC):
    """What :class:`~agentexec.worker.pool.Pool` drives: start, stop, wait."""

    def __init__(self, pool: Pool, num_workers: int, lanes: list[Lane]) -> None:
        self.pool = pool
        self.num_workers = num_workers
        self.lanes = lanes
        self._stop_requested = threading.Event()
        self._force = threading.Event()
        self._timeout = 0.0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- called from the user's thread ---------------------------------------------------------
    def start(self, ready_timeout: float = 60.0) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="agentexec-pool", daemon=True)
        self._thread.start()
        if not self._ready.wait(ready_timeout):
            raise RuntimeError(f"the worker pool did not start within {ready_timeout}s")
        if self._error is not None:
            raise RuntimeError(f"the worker pool failed to start: {self._error}") from self._error

    def request_stop(self, timeout: float) -> None:
        self._timeout = max(0.0, float(timeout))
        self._stop_requested.set()

    def force(self) -> None:
        """Stop waiting for running tasks (a second Ctrl+C)."""
        self._force.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._thread.join(0.2 if remaining is None else min(0.2, remaining))
        return True

    @property
    def error(self) -> BaseException | None:
        """What stopped the supervisor, if it did not stop on request."""
        return self._error

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the supervisor thread -------------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            anyio.run(self._main)
        except BaseException as exc:
            self._error = exc
            log.exception("the worker pool's supervisor failed")
        finally:
            self._ready.set()
            self.closed()

    @abc.abstractmethod
    async def _main(self) -> None:
        """The supervisor's whole life: start workers, watch them, stop them."""

    def closed(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called in the supervisor thread once it is done."""

    async def _wait_for_stop(self) -> None:
        while not self._stop_requested.is_set():
            await anyio.sleep(POLL)

    async def _reaper(self, backends: Backends) -> None:
        while True:
            await anyio.sleep(max(backends.queue.lease_timeout / 3, POLL))
            for lane in self.lanes:
                try:
                    await reap(backends, lane.queue_name)
                except Exception as exc:
                    log.warning("reaping %r failed: %s", lane.queue_name, exc)

    async def _warn_if_not_durable(self, backends: Backends) -> None:
        """Once, at start: what a restart of a backend's server would lose (each line once)."""
        said: set[str] = set()
        for backend in (backends.queue, backends.results, backends.events):
            if not isinstance(backend, DurabilityCheck):
                continue
            try:
                with anyio.fail_after(5):
                    lines = await backend.durability_warnings()
            except Exception as exc:  # cannot tell: say nothing rather than something untrue
                log.debug("checking %r for persistence failed: %s", backend, exc)
                continue
            for line in lines:
                if line not in said:
                    said.add(line)
                    log.warning("%s", line)

    def _start_scheduler(self, tg: TaskGroup, backends: Backends) -> None:
        """The pool's schedules fire from its main process (pools on one queue agree, through
        the results backend's ``claim``, on which of them enqueues each tick)."""
        from agentexec.schedule.records import records_of

        # with runtime schedules (agentexec.schedule.records) a pool without schedules of its
        # own still runs the loop: one may be created while it runs
        if self.pool.schedules or records_of(backends) is not None:
            tg.start_soon(self.pool.scheduler.run, backends)

    def _consumer_id(self, index: int, generation: int) -> str:
        return f"{socket.gethostname()}:{self.pool.id}:w{index}.{generation}"


class ThreadSupervisor(Supervisor):
    """Workers on the supervisor's own event loop (in-process backends)."""

    async def _main(self) -> None:
        backends = self.pool.backends
        workers = [
            Worker(
                index=i,
                consumer_id=self._consumer_id(i, 0),
                pool_id=self.pool.id,
                queue_name=self.pool.queue_name,
                lanes=self.lanes,
                definitions=dict(self.pool.tasks),
                backends=backends,
            )
            for i in range(self.num_workers)
        ]
        async with anyio.create_task_group() as tg:
            for w in workers:
                tg.start_soon(w.run)
            tg.start_soon(self._reaper, backends)
            self._start_scheduler(tg, backends)
            self._ready.set()
            await self._wait_for_stop()
            for w in workers:
                w.stop()
            with anyio.move_on_after(self._timeout):
                while any(w.running for w in workers) and not self._force.is_set():
                    await anyio.sleep(POLL)
            for w in workers:
                w.abort()  # anything still running goes back to the queue
            for w in workers:
                await w.wait_stopped()
            tg.cancel_scope.cancel()
        # a lease taken by a reserve cut off mid-way is handed out again now, not after the lease
        for w in workers:
            for lane in self.lanes:
                try:
                    await reap_consumer(backends, lane.queue_name, w.consumer_id)
                except Exception as exc:
                    log.warning("reaping %s failed: %s", w.consumer_id, exc)
