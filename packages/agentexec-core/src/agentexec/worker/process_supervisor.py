"""The pool's main-process side for worker processes (cross-process backends).

``CONF.num_workers`` workers, forked by the fork server (:mod:`.forkserver`). This supervisor
relays their logs, replaces a worker that dies (its in-flight tasks go back to the queue at
once, through ``reap_consumer``), runs the reaper, and stops them: a shutdown broadcast plus
SIGTERM, a wait up to the timeout, then SIGKILL for the rest, whose tasks go back to the queue.

It survives the death of any process it owns; only a deliberate stop ends it. A dead worker is
replaced. A dead fork server is replaced by its standby (or, if that is gone too, by a new fork
of this process), and its workers carry on: this process is a child subreaper, so they become
its own children, and it reaps them itself from then on (``_Slot.adopted``). A worker exiting
0 by itself was asked to stop (SIGTERM sent to it, or to the whole process group: then the
pool's own stop comes in a moment), so its replacement waits :data:`STOPPED_RESTART_DELAY`.

Being a subreaper has one side effect for the application: a process that a handler starts
and orphans (``cmd &`` in a shell) is adopted by the pool process rather than by init. Those
named ``agentexec:...`` are reaped here; others stay zombies until the pool process exits.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from agentexec import telemetry
from agentexec.backoff import Backoff
from agentexec.lanes import Lane
from agentexec.runtime import Backends
from agentexec.worker.channels import control_channel, logs_channel, shutdown_message
from agentexec.worker.event_loop import worker_loop_options
from agentexec.worker.forkserver import ForkServer, reap_strays
from agentexec.worker.logs import emit_worker_records
from agentexec.worker.process import (
    RECYCLED_EXIT_CODE,
    WorkerSpec,
    is_child_subreaper,
    set_child_subreaper,
)
from agentexec.worker.reaping import reap_consumer
from agentexec.worker.supervisor import POLL, Supervisor

if TYPE_CHECKING:
    from agentexec.worker.pool import Pool

log = logging.getLogger("agentexec.worker")

#: a worker that fails sooner than this after starting is restarted with a growing delay
QUICK_DEATH = 2.0
MAX_RESTART_DELAY = 30.0
#: how long the main process waits for the last log lines of exited workers
LOG_GRACE = 1.0
#: a worker that stopped by itself (exit code 0) is replaced after this long, unless the pool
#: stops meanwhile: after a SIGTERM to the process group, so that no replacement takes a task
STOPPED_RESTART_DELAY = 1.0
#: how often dead processes left behind by a dead fork server are looked for
STRAY_SWEEP = 5.0
#: the fork server is asked to answer a ping this often
PING_INTERVAL = 2.0
#: a fork server that has not answered a ping for this long is stuck (a last-resort server
#: forked while another thread held a lock it needs, a stopped process): it is killed and
#: replaced like a dead one; meanwhile it could neither start workers nor report their exits
SERVER_TIMEOUT = 15.0

@dataclass
class _Slot:
    index: int
    generation: int = 0
    pid: int | None = None
    spawning: bool = False
    consumer_id: str = ""
    started_at: float = 0.0
    restart_at: float = 0.0
    quick_deaths: int = 0
    exit_seen: bool = False
    #: the fork server that forked the worker (or is forking it)
    server: int = 0
    #: its fork server died: the worker is this process's child now, reaped here
    adopted: bool = False


class ProcessSupervisor(Supervisor):
    """``num_workers`` worker processes, forked by the pool's fork server."""

    def __init__(self, pool: Pool, num_workers: int, lanes: list[Lane]) -> None:
        super().__init__(pool, num_workers, lanes)
        self.slots = [_Slot(i) for i in range(num_workers)]
        self.forks = ForkServer(self._spec)
        self._exited: list[tuple[_Slot, _Status]] = []
        self._swept_at = 0.0
        self._loop_options: dict[str, Any] = {}

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.slots if s.pid is not None]

    def start(self, ready_timeout: float = 60.0) -> None:
        # before anything is forked: a bad setting fails here, once, and uvloop is loaded in
        # the fork server (and so in every worker) already
        self._loop_options = worker_loop_options()
        # so the workers of a fork server that dies become our children, not init's
        _SUBREAPER.take()
        # first, while this process runs none of our threads: see agentexec.worker.forkserver
        self.forks.start()
        try:
            super().start(ready_timeout)
        except BaseException:
            self.forks.stop()
            _SUBREAPER.give_back()
            raise

    def _spec(self, index: int, consumer_id: str, server_pid: int, pool_pid: int) -> WorkerSpec:
        """Runs in the fork server, for each worker it forks."""
        return WorkerSpec(
            index=index,
            consumer_id=consumer_id,
            pool_id=self.pool.id,
            queue_name=self.pool.queue_name,
            lanes=self.lanes,
            definitions=dict(self.pool.tasks),
            make_backends=self.pool._fresh_backends,
            parent_pid=server_pid,
            pool_pid=pool_pid,
            engine=self.pool.engine,
            loop_options=self._loop_options,
        )

    def _spawn(self, slot: _Slot) -> None:
        slot.generation += 1
        slot.consumer_id = self._consumer_id(slot.index, slot.generation)
        slot.exit_seen = False
        slot.spawning = True
        slot.adopted = False
        slot.server = self.forks.pid
        slot.started_at = time.monotonic()
        self.forks.spawn(slot.index, slot.consumer_id)

    def _receive(self) -> None:
        """Apply the fork server's news: workers started, workers exited."""
        for message in self.forks.read():
            if message.get("op") == "spawned":
                for slot in self.slots:
                    if slot.index == message.get("index") and slot.spawning:
                        slot.pid, slot.spawning = int(message["pid"]), False
                        log.debug("Worker %d started (pid %d)", slot.index, slot.pid)
            elif message.get("op") == "exited":
                for slot in self.slots:
                    if slot.pid == message.get("pid"):
                        self._exited.append((slot, _Status(message.get("code"), message.get("signal"))))

    async def _main(self) -> None:
        backends = self.pool._fresh_backends()  # this loop's own connections
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self._relay_logs, backends)
                for slot in self.slots:
                    self._spawn(slot)
                with anyio.fail_after(30):
                    while any(s.spawning for s in self.slots):
                        self._watch_server(replace=True)
                        self._receive()
                        await anyio.sleep(0.005)
                tg.start_soon(self._reaper, backends)
                tg.start_soon(self._warn_if_not_durable, backends)
                self._start_scheduler(tg, backends)
                self._ready.set()
                failing = Backoff(0.5, 5.0)
                while not self._stop_requested.is_set():
                    delay = POLL
                    try:
                        self._watch_server(replace=True)
                        await self._check_children(backends, replace=True)
                        failing.reset()
                    except Exception:
                        # only a deliberate stop ends the pool: whatever failed is tried again
                        delay = failing.next()
                        log.exception("supervising the workers failed; retrying in %.1fs", delay)
                    await anyio.sleep(delay)
                await self._shutdown(backends)
                tg.cancel_scope.cancel()
        finally:
            with anyio.move_on_after(5, shield=True):
                await backends.aclose()

    def _watch_server(self, *, replace: bool) -> None:
        """Notice a dead fork server: its workers are ours now; a new server takes over."""
        if self.forks.alive():
            self._kill_stuck_server()
            return
        self._receive()  # what it said before dying: workers it started or saw exit
        dead = self.forks.lost()
        for slot in self.slots:
            if slot.server != dead:
                continue
            if slot.pid is not None:
                slot.adopted = True
            elif slot.spawning:
                # never announced, so never started: its gate closed with the server
                slot.spawning = False
                slot.restart_at = 0.0
        if dead:
            log.error("The pool's fork server (pid %d) exited; its workers carry on", dead)
        self._sweep(force=bool(dead))
        if not replace:
            return
        # a fork that fails (EAGAIN, ENOMEM) raises: the next round tries again, meanwhile no
        # slot waits for a server that is not there (server 0)
        how = self.forks.replace()
        log.warning(
            "The pool's new fork server is %s (pid %d)",
            "the old one's standby" if how == "standby" else "a new fork of the pool process", self.forks.pid,
        )
        if how == "fork":
            log.warning(
                "the fork server's standby was gone too, so the new server was forked from the "
                "pool process while it runs threads (see agentexec.worker.forkserver)"
            )

    def _kill_stuck_server(self) -> None:
        now = time.monotonic()
        if self.forks.pinged_at is None:
            if now - self.forks.ponged_at >= PING_INTERVAL:
                self.forks.ping()
        elif now - self.forks.pinged_at > SERVER_TIMEOUT:
            log.error(
                "The pool's fork server (pid %d) has not answered for %.0fs; killing it",
                self.forks.pid, now - self.forks.pinged_at,
            )
            _kill(self.forks.pid)  # the next round finds it dead and replaces it
            self.forks.pinged_at = None

    def _sweep(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._swept_at >= STRAY_SWEEP:
            self._swept_at = now
            known = {s.pid for s in self.slots if s.pid is not None} | {self.forks.pid}
            if self.forks.standby is not None:
                known.add(self.forks.standby.pid)
            for pid in reap_strays(known):
                log.debug("reaped pid %d, left behind by a dead fork server", pid)

    def closed(self) -> None:
        # the fork server kills its workers, then exits; adopted ones are ours to kill and reap
        for slot in self.slots:
            if slot.pid is not None:
                _kill(slot.pid)
        self.forks.stop()
        for slot in self.slots:
            if slot.pid is not None and slot.adopted:
                try:
                    os.waitpid(slot.pid, 0)
                except ChildProcessError:
                    pass
        self._sweep(force=True)
        _SUBREAPER.give_back()

    async def _check_children(self, backends: Backends, *, replace: bool) -> list[_Slot]:
        """Collect exited workers; hand their tasks out again; start replacements if asked."""
        self._receive()
        self._poll_adopted()
        ended: list[_Slot] = []
        now = time.monotonic()
        exited, self._exited = self._exited, []
        for slot, status in exited:
            if slot.pid is None:
                continue  # reported twice: by its dying server and by waitpid here
            pid, slot.pid, slot.adopted = slot.pid, None, False
            ended.append(slot)
            if replace and status.code == RECYCLED_EXIT_CODE:
                # it drained itself (max_tasks_per_worker / max_worker_rss_mb): its tasks are done
                log.info("Worker %d (pid %s) recycled; starting a replacement", slot.index, pid)
                slot.quick_deaths = 0
                slot.restart_at = now
            elif replace:
                log.error(
                    "Worker %d (pid %s) %s; starting a replacement", slot.index, pid, _describe(status)
                )
                telemetry.count("worker.restarted", {"queue": self.pool.queue_name})
                # a worker that fails right after starting would fail again at once: back off.
                # SIGKILL comes from outside (an operator, the OOM killer): replace at once
                quick = now - slot.started_at < QUICK_DEATH and status.signal != signal.SIGKILL
                slot.quick_deaths = slot.quick_deaths + 1 if quick else 0
                delay = min(0.5 * 2 ** (slot.quick_deaths - 1), MAX_RESTART_DELAY) if slot.quick_deaths else 0.0
                if status.code == 0:
                    delay = max(delay, STOPPED_RESTART_DELAY)
                slot.restart_at = now + delay
            await self._reap_worker(backends, slot)
        if replace:
            for slot in self.slots:
                if self._stop_requested.is_set():
                    break
                if slot.pid is None and not slot.spawning and now >= slot.restart_at:
                    self._spawn(slot)
            self._sweep()
        return ended

    def _poll_adopted(self) -> None:
        """Collect the exits of workers whose fork server died (they are our children now)."""
        reported = {id(slot) for slot, _ in self._exited}
        for slot in self.slots:
            if slot.pid is None or not slot.adopted or id(slot) in reported:
                continue
            try:
                pid, status = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:
                self._exited.append((slot, _Status()))  # its server reaped it before dying
                continue
            if pid:
                if os.WIFSIGNALED(status):
                    self._exited.append((slot, _Status(signal=os.WTERMSIG(status))))
                else:
                    self._exited.append((slot, _Status(code=os.waitstatus_to_exitcode(status))))

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

    def _live(self) -> list[_Slot]:
        return [s for s in self.slots if s.pid is not None]

    async def _wait_exits(self, backends: Backends, deadline: float) -> None:
        while self._live() and time.monotonic() < deadline and not self._force.is_set():
            self._watch_server(replace=False)
            await self._check_children(backends, replace=False)
            if self._live():
                await anyio.sleep(POLL)

    async def _shutdown(self, backends: Backends) -> None:
        live = self._live()
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
        await self._wait_exits(backends, time.monotonic() + self._timeout)
        killed = self._live()
        for slot in killed:
            log.warning("Worker %d (pid %s) did not finish in time; killing it", slot.index, slot.pid)
            _kill(slot.pid)
        self._force.clear()
        await self._wait_exits(backends, time.monotonic() + 10)
        for slot in killed:
            slot.exit_seen = True
        with anyio.move_on_after(LOG_GRACE):
            while not all(s.exit_seen for s in self.slots):
                await anyio.sleep(POLL)

    async def _relay_logs(self, backends: Backends, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        started = False
        wait = Backoff(0.1, 5.0)
        while True:
            try:
                async with backends.events.subscribe([logs_channel(self.pool.queue_name)]) as stream:
                    if not started:
                        started = True
                        task_status.started()
                    wait.reset()
                    async for event in stream:
                        for msg in emit_worker_records(event.data, self.pool.id):
                            if msg.get("event") == "exit":
                                for slot in self.slots:
                                    if slot.index == msg.get("worker"):
                                        slot.exit_seen = True
            except Exception as exc:
                if not started:
                    started = True
                    task_status.started()
                log.warning("relaying worker logs failed (%s); retrying in %.1fs", exc, wait.delay)
                await wait.sleep()


class _Subreaper:
    """This process is a child subreaper while any pool of it runs processes (several may), and
    goes back to what it was after the last one stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._was = False

    def take(self) -> None:
        with self._lock:
            if self._users == 0:
                self._was = is_child_subreaper()
                if not self._was and not set_child_subreaper(True):
                    log.debug("cannot be a child subreaper (not Linux): a dead fork server takes its workers along")
            self._users += 1

    def give_back(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and not self._was:
                set_child_subreaper(False)


_SUBREAPER = _Subreaper()


@dataclass
class _Status:
    code: int | None = None
    signal: int | None = None


def _describe(status: _Status) -> str:
    if status.signal is not None:
        try:
            name = signal.Signals(status.signal).name
        except ValueError:
            name = str(status.signal)
        return f"was killed by {name}"
    if status.code is None:
        return "exited"
    return f"exited with code {status.code}"


def _signal(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill(pid: int | None) -> None:
    _signal(pid, signal.SIGKILL)
