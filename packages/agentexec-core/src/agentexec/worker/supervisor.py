"""The pool's main-process side: start workers, watch them, replace the dead, reap, stop.

Two flavours share one shape, a thread running an anyio loop:

- :class:`ProcessSupervisor` (cross-process backends): ``CONF.num_workers`` forked processes;
  it relays their logs, replaces a worker that dies (its in-flight tasks go back to the queue at
  once), and runs the reaper for leases of workers lost anywhere.
- :class:`ThreadSupervisor` (in-process backends such as ``memory://``): the workers run on the
  supervisor's own event loop, since other processes could not see the queue.

Shutdown, for both: workers are asked to finish their running tasks and take no more; after the
timeout the rest are killed (processes) or cancelled (in-process) and their tasks go back to
the queue. Tasks still queued stay queued for the next start.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from agentexec.runtime import Backends
from agentexec.worker.channels import control_channel, logs_channel, shutdown_message
from agentexec.worker.consumer import Worker
from agentexec.worker.lanes import Lane
from agentexec.worker.logs import emit_worker_record
from agentexec.worker.process import STOP_SIGNALS, WorkerSpec, fork_worker
from agentexec.worker.reaping import reap, reap_consumer

if TYPE_CHECKING:
    from agentexec.worker.pool import Pool

log = logging.getLogger("agentexec.worker")

POLL = 0.05
#: a worker that dies sooner than this after starting is restarted with a growing delay
QUICK_DEATH = 2.0
MAX_RESTART_DELAY = 30.0
#: how long the main process waits for the last log lines of exited workers
LOG_GRACE = 1.0


class Supervisor:
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

    async def _main(self) -> None:
        raise NotImplementedError

    def closed(self) -> None:
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

    def _start_scheduler(self, tg: TaskGroup, backends: Backends) -> None:
        """The pool's schedules fire from its main process (pools on one queue agree, through
        the results backend's ``claim``, on which of them enqueues each tick)."""
        if self.pool.schedules:
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


@dataclass
class _Slot:
    index: int
    generation: int = 0
    pid: int | None = None
    consumer_id: str = ""
    started_at: float = 0.0
    restart_at: float = 0.0
    quick_deaths: int = 0
    exit_seen: bool = False


class _Forker:
    """A thread that only forks. Every worker is forked from it, so each child starts as a copy
    of a thread holding no locks and running no event loop, and the parent-death signal (which
    fires when the forking *thread* ends) is tied to a thread that lives as long as the pool."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], int], concurrent.futures.Future[int]] | None]
        self._requests = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="agentexec-forker", daemon=True)
        self._thread.start()

    def fork(self, fn: Callable[[], int]) -> int:
        fut: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._requests.put((fn, fut))
        return fut.result()

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(5)

    def _serve(self) -> None:
        # children inherit this mask: they start with SIGINT/SIGTERM blocked until their handlers
        # are installed, and the signals meant for the pool reach the main thread, not this one
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        while True:
            item = self._requests.get()
            if item is None:
                return
            fn, fut = item
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)


class ProcessSupervisor(Supervisor):
    """``num_workers`` forked worker processes."""

    def __init__(self, pool: Pool, num_workers: int, lanes: list[Lane]) -> None:
        super().__init__(pool, num_workers, lanes)
        self.slots = [_Slot(i) for i in range(num_workers)]
        self._forker: _Forker | None = None
        self._exits: dict[int, bool] = {}

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.slots if s.pid is not None]

    def _spawn(self, slot: _Slot) -> None:
        assert self._forker is not None
        slot.generation += 1
        slot.consumer_id = self._consumer_id(slot.index, slot.generation)
        slot.exit_seen = False
        spec = WorkerSpec(
            index=slot.index,
            consumer_id=slot.consumer_id,
            pool_id=self.pool.id,
            queue_name=self.pool.queue_name,
            lanes=self.lanes,
            definitions=dict(self.pool.tasks),
            make_backends=self.pool._fresh_backends,
            parent_pid=os.getpid(),
            engine=self.pool.engine,
        )
        slot.pid = self._forker.fork(lambda: fork_worker(spec))
        slot.started_at = time.monotonic()
        log.debug("Worker %d started (pid %d)", slot.index, slot.pid)

    async def _main(self) -> None:
        backends = self.pool._fresh_backends()  # this loop's own connections
        self._forker = _Forker()
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self._relay_logs, backends)
                for slot in self.slots:
                    self._spawn(slot)
                tg.start_soon(self._reaper, backends)
                self._start_scheduler(tg, backends)
                self._ready.set()
                while not self._stop_requested.is_set():
                    await self._check_children(backends, replace=True)
                    await anyio.sleep(POLL)
                await self._shutdown(backends)
                tg.cancel_scope.cancel()
        finally:
            with anyio.move_on_after(5, shield=True):
                await backends.aclose()

    def closed(self) -> None:
        for slot in self.slots:  # whatever happened above, no worker survives its supervisor
            if slot.pid is not None:
                _kill(slot.pid)
                _wait(slot.pid, block=True)
                slot.pid = None
        if self._forker is not None:
            self._forker.close()

    async def _check_children(self, backends: Backends, *, replace: bool) -> list[_Slot]:
        """Collect exited workers; hand their tasks out again; start replacements if asked."""
        ended: list[_Slot] = []
        now = time.monotonic()
        for slot in self.slots:
            if slot.pid is None:
                if replace and now >= slot.restart_at:
                    self._spawn(slot)
                continue
            status = _wait(slot.pid)
            if status is None:
                continue
            pid, slot.pid = slot.pid, None
            ended.append(slot)
            if replace:
                log.error(
                    "Worker %d (pid %d) %s; starting a replacement", slot.index, pid, _describe(status)
                )
                lived = now - slot.started_at
                slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH else 0
                delay = min(0.5 * 2 ** (slot.quick_deaths - 1), MAX_RESTART_DELAY) if slot.quick_deaths else 0.0
                slot.restart_at = now + delay
            await self._reap_worker(backends, slot)
        return ended

    async def _reap_worker(self, backends: Backends, slot: _Slot) -> None:
        for lane in self.lanes:
            try:
                if not await reap_consumer(backends, lane.queue_name, slot.consumer_id):
                    log.warning(
                        "the queue backend cannot hand out a dead worker's tasks at once; they "
                        "return after the lease timeout (%ss)", backends.queue.lease_timeout,
                    )
            except Exception as exc:
                log.error("handing out worker %d's tasks again failed: %s", slot.index, exc)

    async def _shutdown(self, backends: Backends) -> None:
        live = [s for s in self.slots if s.pid is not None]
        for slot in self.slots:
            if slot.pid is None:
                slot.exit_seen = True  # only running workers will say goodbye
        log.info("Shutting down %d worker(s)", len(live))
        with anyio.move_on_after(2):
            try:
                await backends.events.publish(
                    control_channel(self.pool.queue_name), shutdown_message(self.pool.id)
                )
            except Exception as exc:
                log.warning("broadcasting the shutdown failed (%s); signalling workers directly", exc)
        for slot in live:
            _signal(slot.pid, signal.SIGTERM)  # the same request, in case the broadcast was missed
        deadline = time.monotonic() + self._timeout
        while any(s.pid is not None for s in self.slots):
            await self._check_children(backends, replace=False)
            if time.monotonic() >= deadline or self._force.is_set():
                break
            await anyio.sleep(POLL)
        killed = [s for s in self.slots if s.pid is not None]
        for slot in killed:
            log.warning("Worker %d (pid %s) did not finish in time; killing it", slot.index, slot.pid)
            assert slot.pid is not None
            _kill(slot.pid)
        for slot in killed:
            assert slot.pid is not None
            _wait(slot.pid, block=True)
            slot.pid = None
            await self._reap_worker(backends, slot)
        with anyio.move_on_after(LOG_GRACE):
            while not all(s.exit_seen for s in self.slots if s not in killed):
                await anyio.sleep(POLL)

    async def _relay_logs(self, backends: Backends, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        started = False
        delay = 0.1
        while True:
            try:
                async with backends.events.subscribe([logs_channel(self.pool.queue_name)]) as stream:
                    if not started:
                        started = True
                        task_status.started()
                    delay = 0.1
                    async for event in stream:
                        msg = emit_worker_record(event.data)
                        if msg and msg.get("event") == "exit":
                            for slot in self.slots:
                                if slot.index == msg.get("worker"):
                                    slot.exit_seen = True
            except Exception as exc:
                if not started:
                    started = True
                    task_status.started()
                log.warning("relaying worker logs failed (%s); retrying in %.1fs", exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)


@dataclass
class _Status:
    code: int | None = None
    signal: int | None = None


def _wait(pid: int, *, block: bool = False) -> _Status | None:
    try:
        got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return _Status()
    if got == 0:
        return None
    if os.WIFSIGNALED(status):
        return _Status(signal=os.WTERMSIG(status))
    return _Status(code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None)


def _describe(status: _Status) -> str:
    if status.signal is not None:
        try:
            name = signal.Signals(status.signal).name
        except ValueError:
            name = str(status.signal)
        return f"was killed by {name}"
    return f"exited with code {status.code}"


def _signal(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill(pid: int) -> None:
    _signal(pid, signal.SIGKILL)
