"""The worker loop: take tasks from each lane, run them in slots, heartbeat, stop cleanly.

One ``Worker`` runs on one anyio event loop (a worker process's, or the pool's own thread for
in-process backends). Per lane it keeps ``lane.slots`` tasks running at most. A task goes
through three steps, each owned by one place:

- **take** (:meth:`Worker._fetch`): wait for a free slot — and for the writers to keep up
  (:mod:`.health`: nothing runs that cannot be recorded) — then reserve as many tasks as there
  are free slots, in one round trip where the queue offers ``reserve_many``;
- **run** (:meth:`Worker._run`): a redelivered task is first checked against what is stored
  (it may have finished before its worker died), then :func:`agentexec.lifecycle.execute_task`
  writes RUNNING, calls the handler and returns its final line and outcome to the sink;
- **finish** (:mod:`.sink` → :mod:`.writer` → :mod:`.outbox`): the final line is committed,
  then the outcome stored, then the lease acknowledged, in that order and only there. A run
  the worker aborts gives its task back (attempts unchanged); one cancelled by ``ax.cancel``
  ends CANCELED; a finish that itself fails ends the task ERROR, counted once.

Stopping lets running tasks finish, takes nothing new, and returns once every finished task's
activity, outcome and acknowledgement are written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar
from uuid import UUID

import anyio

from agentexec.activity.status import Status
from agentexec.backends import BatchReserve, Lease, LogEntry, StagedResults
from agentexec.backoff import Backoff
from agentexec.cancellation import (
    CANCEL_CHANNEL,
    CANCEL_REQUESTED_PREFIX,
    canceled_message,
    parse_cancel,
)
from agentexec.config import CONF
from agentexec.faults import Outage, describe, error_message
from agentexec.lanes import Lane
from agentexec.lifecycle import execute_task, failure, reject, set_sink, unknown_task_error
from agentexec.results import Outcome
from agentexec.runtime import Backends
from agentexec.task import Task, TaskDefinition
from agentexec.worker.channels import control_channel, is_shutdown_for
from agentexec.worker.health import write_backoff
from agentexec.worker.locking import LocksUnsupported, hold_locks, unlock_early
from agentexec.worker.reaping import RELEASED_MESSAGE
from agentexec.worker.sink import WorkerSink
from agentexec.worker.stager import Stager
from agentexec.worker.writer import MAX_BATCH, ActivityWriter

log = logging.getLogger("agentexec.worker")

T = TypeVar("T")

#: concurrent ``reserve`` calls per lane: enough to fill many free slots quickly, few enough
#: that idle workers do not tie up many blocking backend connections
MAX_FETCHERS = 2
#: tasks one ``reserve_many`` call may take (queues that offer it), bounded by free slots
MAX_RESERVE_BATCH = 64
#: finished tasks a worker lets wait for their outcome and ack before it stops taking new ones
#: (or its slots' worth, if more): two full batches of the writer (``writer.MAX_BATCH``), one
#: being written and one filling, so a healthy store is never the bottleneck (measured: a
#: bound of 96 cost a third of a no-op drain), while a slow one holds the worker back
MAX_UNFINISHED = 2 * MAX_BATCH
#: while tasks wait and fewer than half of a lane's slots are free, how long a fetcher
#: lets more runs end before it takes (seconds): with handlers that await, slots free one at a
#: time, and a take per freed slot cost more than the wait (measured on PostgreSQL: a take and
#: a finish per task instead of per batch)
GATHER_SLOTS = 0.002
#: how long a worker remembers a cancel request it heard for a task it did not hold: covers a
#: task it was taking at that moment (the reserve's reply still on its way)
CANCEL_MEMORY = 60.0


class _Unread:
    """A read that failed for good (see ``Worker._read``)."""


def rss_mb() -> float | None:
    """This process's resident memory in MiB (``/proc/self/statm``; the peak elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _take_more(slots: anyio.Semaphore, most: int) -> int:
    """Acquire up to ``most`` more free slots without waiting; returns how many."""
    taken = 0
    while taken < most:
        try:
            slots.acquire_nowait()
        except anyio.WouldBlock:
            break
        taken += 1
    return taken


def _release(slots: anyio.Semaphore, count: int) -> None:
    for _ in range(count):
        slots.release()


class Worker:
    def __init__(
        self,
        *,
        index: int,
        consumer_id: str,
        pool_id: str,
        queue_name: str,
        lanes: Sequence[Lane],
        definitions: Mapping[str, TaskDefinition],
        backends: Backends,
        listen_for_shutdown: bool = False,
        max_tasks: int | None = None,
        max_rss_mb: int | None = None,
    ) -> None:
        self.index = index
        self.consumer_id = consumer_id
        self.pool_id = pool_id
        self.queue_name = queue_name
        self.lanes = list(lanes)
        self.definitions = definitions
        self.backends = backends
        self.listen_for_shutdown = listen_for_shutdown
        self.stopping = False
        self.running = 0
        #: recycling (a worker process only): after this many tasks, or above this RSS, the
        #: worker drains (finishes its running tasks, takes no more) and its run ends
        self.max_tasks = max_tasks
        self.max_rss_mb = max_rss_mb
        #: tasks taken so far (a recycling worker takes no more than ``max_tasks``)
        self.taken = 0
        #: slots being filled by reserves in progress (counted against ``max_tasks`` too)
        self._taking = 0  # slots a reserve in progress may fill
        #: why the worker drained itself, once it did (``None``: it did not)
        self.recycled: str | None = None
        self._waiting_scopes: set[anyio.CancelScope] = set()
        self._tasks_scope: anyio.CancelScope | None = None
        #: the running tasks (plain asyncio tasks, see ``_start``) -> their lease and slots
        self._runs: dict[asyncio.Task[None], tuple[Lease, anyio.Semaphore]] = {}
        #: agent id -> its run, for cancel requests
        self._run_of: dict[UUID, asyncio.Task[None]] = {}
        #: cancel requests heard: agent id -> (reason, when); pruned after ``CANCEL_MEMORY``
        self._cancels: dict[UUID, tuple[str, float]] = {}
        #: runs this worker is cancelling at a user's request: agent id -> reason
        self._cancelling: dict[UUID, str] = {}
        self._stopped = anyio.Event()
        queue = backends.queue
        self._reserve_many = queue.reserve_many if isinstance(queue, BatchReserve) else None
        #: said once per outage of the queue, however many reserves and heartbeats fail
        self._reserving = Outage(
            f"the queue ({type(queue).__name__})", "this worker cannot take tasks; retrying"
        )
        self._beating = Outage(
            f"the queue ({type(queue).__name__}), for heartbeats",
            f"this worker's leases expire after {queue.lease_timeout:g} s without one (its tasks "
            "may then run again elsewhere); retrying",
        )

    # -- control (call from the worker's event loop) -----------------------------------------
    def stop(self) -> None:
        """Finish the running tasks, take no more."""
        if self.stopping:
            return
        self.stopping = True
        for scope in list(self._waiting_scopes):
            scope.cancel()

    def drain(self, reason: str) -> None:
        """Finish the running tasks, take no more, as :meth:`stop` does, but let a reserve in
        progress end by itself (a task it brings is given straight back, attempts unchanged)."""
        if self.stopping:
            return
        self.recycled = reason
        self.stopping = True
        log.info("Recycling this worker (%s): finishing %d running task(s), then it is replaced", reason, self.running)

    def _check_memory(self) -> None:
        """After each task (reading ``/proc/self/statm`` costs ~15 us): over the limit, drain."""
        if self.stopping or self.max_rss_mb is None:
            return
        rss = rss_mb()
        if rss is not None and rss > self.max_rss_mb:
            self.drain(f"its memory is {rss:.0f} MiB, max_worker_rss_mb={self.max_rss_mb}")

    def _room(self, wanted: int) -> int:
        """How many of ``wanted`` more tasks this worker may take (``max_tasks``); once it has
        taken its last, it drains."""
        if self.max_tasks is None:
            return wanted
        if self.taken >= self.max_tasks:
            self.drain(f"it took {self.taken} tasks, max_tasks_per_worker={self.max_tasks}")
            return 0
        return max(0, min(wanted, self.max_tasks - self.taken - self._taking))

    def abort(self) -> None:
        """Cancel the running tasks too; each goes back to its queue, attempts unchanged."""
        self.stop()
        if self._tasks_scope is not None:
            self._tasks_scope.cancel()
        for run in self._runs:  # also those that have not taken a step yet
            run.cancel()

    @property
    def poll_interval(self) -> float:
        # bounds how long a stop waits for a blocked reserve to return
        return min(1.0, self.backends.queue.lease_timeout / 3)

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        writer = ActivityWriter(self.backends.activity, self.backends.results, self.backends.queue)
        # finished tasks waiting for their outcome and ack count against taking new ones: a
        # worker whose writes fall behind (or fail) slows down instead of drifting ahead
        writer.health.max_unfinished = max(sum(lane.slots for lane in self.lanes), MAX_UNFINISHED)
        # where a batch's line, outcome and ack commit together, a quick handler's outcome is
        # not staged (see Stager); elsewhere every outcome is
        stager = Stager(self.backends.results, every=not writer.joint)
        self.sink = WorkerSink(writer, stager)
        set_sink(self.sink)  # inherited by every task started below
        try:
            async with anyio.create_task_group() as services:
                services.start_soon(writer.run)
                services.start_soon(stager.run)
                services.start_soon(self._heartbeat)
                services.start_soon(self._listen_for_control)
                with anyio.CancelScope() as self._tasks_scope:
                    try:
                        async with anyio.create_task_group() as fetchers:
                            for lane in self.lanes:
                                slots = anyio.Semaphore(lane.slots)
                                for _ in range(min(lane.slots, MAX_FETCHERS)):
                                    fetchers.start_soon(self._fetch, lane, slots)
                        await self._runs_done()  # stopped: the running tasks finish
                    except BaseException:
                        for run in self._runs:  # aborted or cancelled: so are they
                            run.cancel()
                        raise
                    finally:
                        with anyio.CancelScope(shield=True):
                            await self._runs_done()  # each gives its task back, if it must
                await writer.close()
                services.cancel_scope.cancel()
        finally:
            set_sink(None)
            self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _fetch(self, lane: Lane, slots: anyio.Semaphore) -> None:
        wait = Backoff(0.1, 5.0)
        writer = self.sink.writer
        backlog = False  # the last take brought all it asked for: more tasks likely wait
        while not self.stopping:
            # a stop cancels the wait for a slot and a blocked reserve alike, so shutdown is
            # prompt; a task moved to us by a reserve cut off midway is in flight for this
            # consumer, and the pool hands it out again as soon as this worker has exited
            leases: list[Lease] = []
            held = 0
            with anyio.CancelScope() as waiting:
                self._waiting_scopes.add(waiting)
                try:
                    if not writer.health.accepting:
                        # backpressure: a backend it writes to is down, or too many finished
                        # tasks wait to be recorded; nothing may run that cannot be recorded
                        await writer.health.ready()
                    await slots.acquire()
                    if backlog and self._reserve_many and slots.value < lane.slots // 2:
                        # tasks wait, and few slots are free: let a few more runs end first,
                        # so one take brings several (a take costs a round trip, and so does
                        # each finish of what it brings) rather than one per freed slot
                        await anyio.sleep(GATHER_SLOTS)
                    if self.stopping or not self._room(1):  # drained (or due to) meanwhile
                        slots.release()
                        return
                    held = 1 + _take_more(slots, self._room(MAX_RESERVE_BATCH) - 1) if self._reserve_many else 1
                    self._taking += held
                    try:
                        leases = await self._reserve(lane, held)
                    finally:
                        self._taking -= held
                except anyio.get_cancelled_exc_class():
                    _release(slots, held)
                    raise
                except Exception as exc:
                    _release(slots, held)
                    if not self._reserving.failed(exc):
                        log.debug("taking a task from %r failed again (%s)", lane.queue_name, describe(exc))
                    await wait.sleep()
                    continue
                finally:
                    self._waiting_scopes.discard(waiting)
            if waiting.cancelled_caught:
                return
            if wait.backing_off:
                self._reserving.ok()
                wait.reset()
            _release(slots, held - len(leases))
            backlog = len(leases) == held
            if self.stopping:  # taken while a stop came in: give them straight back
                for lease in leases:
                    await self.backends.queue.release(lease)
                _release(slots, len(leases))
                return
            for lease in leases:
                self._start(lease, slots)

    # -- running tasks ----------------------------------------------------------------------------
    def _start(self, lease: Lease, slots: anyio.Semaphore) -> None:
        """Run the task of ``lease`` in a plain asyncio task: anyio's ``start_soon`` costs ~19 us
        per task, ``create_task`` ~3 (measured), and the worker keeps, aborts and awaits its
        runs itself (``_runs``)."""
        env = lease.envelope
        self.taken += 1
        if self.max_tasks is not None and self.taken >= self.max_tasks:
            self._room(0)  # its last task: take no more
        self.sink.leases[env.agent_id] = lease
        self.sink.writer.own.add(env)
        run = asyncio.get_running_loop().create_task(self._run(lease, slots))
        self._runs[run] = (lease, slots)
        self._run_of[env.agent_id] = run
        run.add_done_callback(self._ran)

    def _ran(self, run: asyncio.Task[None]) -> None:
        lease, slots = self._runs.pop(run)
        if self._run_of.get(lease.envelope.agent_id) is run:
            del self._run_of[lease.envelope.agent_id]
        self._cancelling.pop(lease.envelope.agent_id, None)
        if run.cancelled():
            held = self.sink.leases.pop(lease.envelope.agent_id, None)
            if held is not None:
                # cancelled before its first step: its slot and its task go back
                slots.release()
                self._give_back(held)
        elif run.exception() is not None:
            log.error("running task %s failed", lease.envelope.agent_id, exc_info=run.exception())

    async def _runs_done(self) -> None:
        while self._runs:
            await asyncio.wait(list(self._runs))

    async def _reserve(self, lane: Lane, count: int) -> list[Lease]:
        # ``reserve_many`` even for one task: while tasks wait, Redis takes it in one round trip
        # (its ``reserve`` costs two). With handlers that await (as real ones do), slots free
        # one at a time and most takes are of one task (measured: 0.13 single reserves per
        # task with a handler awaiting a Redis INCR, 0.06 with a no-op one)
        if self._reserve_many is not None:
            return await self._reserve_many(lane.queue_name, self.consumer_id, count, self.poll_interval)
        lease = await self.backends.queue.reserve(lane.queue_name, self.consumer_id, self.poll_interval)
        return [] if lease is None else [lease]

    async def _run(self, lease: Lease, slots: anyio.Semaphore) -> None:
        env = lease.envelope
        task = Task.model_construct(
            agent_id=env.agent_id,
            task_name=env.task_name,
            context=env.context,  # validated into the handler's model by the lifecycle
            queue_name=env.queue_name,
            priority=env.priority,
            attempts=env.attempts + env.retries,  # runs before this one: a failure counts them all
            trace=env.trace,
        )
        definition = self.definitions.get(env.task_name)
        self.running += 1
        try:
            heard = self._cancels.pop(env.agent_id, None)
            if heard is not None:  # cancelled while this worker was taking it
                self._end_cancelled(task, heard[0], env.attempts)
                return
            if env.locks is not None or (definition is not None and definition.has_locks):
                try:
                    locked = await hold_locks(lease, definition, self.backends.queue)
                except LocksUnsupported as exc:
                    await self._fail(task, str(exc))
                    return
                if locked is None:  # parked until a holder of its lock finishes
                    self.sink.leases.pop(env.agent_id, None)
                    self.sink.writer.own.forget(env.agent_id)
                    return
                lease = locked
                self.sink.leases[env.agent_id] = lease
            quiet = False
            if env.attempts:
                settled = await self._settled_before(task)
                if settled == "done":
                    return
                quiet = settled == "quiet"
            if definition is None:
                await reject(task, unknown_task_error(
                    env.task_name, sorted(self.definitions), lease.queue_name
                ), self.sink)
                return
            try:
                await execute_task(task, quiet=quiet, definition=definition)
            except Exception:
                pass  # the lifecycle recorded it (activity ERROR, failed outcome) and logged it
            if lease.envelope.locks is not None:
                await unlock_early(lease, self.backends.queue)
        except anyio.get_cancelled_exc_class():
            reason = self._cancelling.pop(env.agent_id, None)
            if reason is not None and env.agent_id in self.sink.leases:
                # cancelled at a user's request (ax.cancel): the task ends CANCELED here, once;
                # the worker's own abort, if one came too, still stops this run
                self._end_cancelled(task, reason, env.attempts + 1)
                current = asyncio.current_task()
                if current is None or current.uncancel() == 0:
                    return
                raise
            # aborted: unless its outcome is already on its way, the task goes back to the queue
            if self.sink.leases.pop(env.agent_id, None) is not None:
                self._give_back(lease)
            raise
        except Exception as exc:
            # the finish path itself failed: the task fails, counted once, instead of going
            # back to the queue uncounted (to fail the same way again, forever)
            if env.agent_id in self.sink.leases:
                log.error("task %s could not be finished", env.agent_id, exc_info=True)
                await self._fail(task, f"the worker could not finish the task: {describe(exc)}")
        finally:
            self.running -= 1
            slots.release()
            if self.sink.leases.get(env.agent_id) is lease:
                log.error("task %s ended without an outcome; failing it", env.agent_id)
                await self._fail(task, "the worker could not finish the task: it ended without an outcome")
            if self.max_rss_mb is not None:
                self._check_memory()

    def _end_cancelled(self, task: Task, reason: str, attempts: int) -> None:
        """End ``task`` CANCELED: its line, its cancelled outcome, its ack (``finished`` hands
        them to the writer without waiting, so a cancelled run needs no await to end)."""
        log.info("Task %s (%s) cancelled: %s", task.task_name, task.agent_id, reason)
        entry = LogEntry(task.agent_id, canceled_message(reason), Status.CANCELED)
        outcome = Outcome.cancelled(task.task_name, reason, attempts).encode()
        self.sink.writer.submit(entry, outcome=(task.agent_id, outcome), ack=self.sink.leases.pop(task.agent_id, None))

    def cancel(self, agent_id: UUID, reason: str) -> bool:
        """A user asked to cancel ``agent_id`` (``ax.cancel``): cancel its run if this worker
        holds it and it has not finished; otherwise remember the request for a while, in case
        the task is on its way to this worker. True when a run was cancelled."""
        now = time.monotonic()
        run = self._run_of.get(agent_id)
        if run is not None and not run.done() and agent_id in self.sink.leases:
            self._cancelling[agent_id] = reason
            run.cancel()
            return True
        if run is None:
            for aid in [a for a, (_, at) in self._cancels.items() if now - at > CANCEL_MEMORY]:
                del self._cancels[aid]
            self._cancels[agent_id] = (reason, now)
        return False

    async def _fail(self, task: Task, reason: str) -> None:
        """End ``task`` ERROR with ``reason``: its line, its failed outcome, its ack."""
        entry, data = failure(task, reason, task.attempts + 1)
        try:
            await self.sink.finished(task, entry, data)
        except Exception:  # the writer is closed: the lease expires, the task is handed out again
            log.exception("task %s could not be failed", task.agent_id)

    async def _settled_before(self, task: Task) -> str:
        """A redelivered task may have finished before its worker died (the steps after the
        handler are: final line, outcome, ack). What is left to do, from what is stored:

        - ``"done"``: its outcome is stored (only the ack was missing), or its activity ended
          ERROR/CANCELED (the failure is stored as its outcome here): acknowledged, not run;
        - ``"quiet"``: its activity says COMPLETE but the value is lost: run again for the value
          only, writing no line after the final one;
        - ``"run"``: it never finished; run it.
        """
        data = await self._read(lambda: self.backends.results.get(task.agent_id), "outcome", task, True)
        if isinstance(data, _Unread):
            return "run"
        if data is not None:
            try:
                Outcome.decode(data)
            except ValueError:
                pass
            else:
                log.info("Task %s (%s) already finished; not running it again", task.task_name, task.agent_id)
                self.sink.writer.submit(None, ack=self.sink.leases.pop(task.agent_id))
                return "done"
        detail = await self._read(lambda: self.backends.activity.adetail(task.agent_id), "activity", task, False)
        if isinstance(detail, _Unread):
            return "run"
        status = None if detail is None else detail.status
        staged = await self._staged(task)
        if staged is not None:
            # the handler returned before its worker died: finish from its staged outcome
            entry = None
            if status not in (Status.COMPLETE, Status.ERROR, Status.CANCELED):
                if staged.status == "ok":
                    entry = LogEntry(task.agent_id, CONF.activity_message_complete, Status.COMPLETE, 100)
                elif staged.status == "cancelled":
                    entry = LogEntry(task.agent_id, canceled_message(staged.error or "cancelled"), Status.CANCELED)
                else:
                    entry = LogEntry(task.agent_id, error_message(staged.error or "failed"), Status.ERROR)
            log.info("Task %s (%s) had finished; completing it from its staged outcome", task.task_name, task.agent_id)
            self.sink.writer.submit(
                entry, outcome=(task.agent_id, staged.encode()), ack=self.sink.leases.pop(task.agent_id)
            )
            return "done"
        if status is Status.COMPLETE:
            return "quiet"
        requested = _cancel_requested(detail)
        if requested is not None and status in (Status.QUEUED, Status.RUNNING):
            # cancelled while its last worker held it, and that worker died before ending it
            self._end_cancelled(task, requested, task.attempts)
            return "done"
        if status in (Status.ERROR, Status.CANCELED):
            assert detail is not None
            reason = detail.logs[-1].message if detail.logs else status.value
            outcome = Outcome.failed(task.task_name, reason, task.attempts)
            log.info("Task %s (%s) already ended %s; not running it again", task.task_name, task.agent_id, status.value)
            self.sink.writer.submit(
                None, outcome=(task.agent_id, outcome.encode()), ack=self.sink.leases.pop(task.agent_id)
            )
            return "done"
        return "run"

    async def _read(
        self, read: Callable[[], Awaitable[T]], what: str, task: Task, results: bool
    ) -> T | _Unread:
        """What a redelivered task's check reads. While the backend is unreachable it waits
        (the task keeps its slot, the worker takes nothing new: the writer says so once), since
        deciding without it could run again a task that had finished; another error is logged
        and the task runs (at-least-once)."""
        wait = write_backoff()
        writer = self.sink.writer
        while True:
            try:
                value = await read()
            except Exception as exc:
                if writer.health.read_failed(exc, results):
                    await wait.sleep()
                    continue
                log.warning("reading the %s of redelivered task %s failed (%s); running it", what, task.agent_id, describe(exc))
                return _Unread()
            writer.health.read_ok(results)
            return value

    async def _staged(self, task: Task) -> Outcome | None:
        results = self.backends.results
        if not isinstance(results, StagedResults):
            return None
        try:
            data = await results.staged(task.agent_id)
            return None if data is None else Outcome.decode(data)
        except Exception as exc:
            log.warning("reading the staged outcome of %s failed (%s)", task.agent_id, exc)
            return None

    def _give_back(self, lease: Lease) -> None:
        # the QUEUED line is written before the release, so a worker that takes the task
        # again writes its RUNNING line after it
        self.sink.writer.submit(
            LogEntry(lease.envelope.agent_id, RELEASED_MESSAGE, Status.QUEUED), release=lease
        )

    async def _heartbeat(self) -> None:
        queue = self.backends.queue
        while True:
            failed: Exception | None = None
            for lane in self.lanes:
                try:
                    await queue.heartbeat(lane.queue_name, self.consumer_id)
                except Exception as exc:
                    failed = exc
            if failed is not None:
                self._beating.failed(failed)
            else:
                self._beating.ok()
            await anyio.sleep(max(queue.lease_timeout / 3, 0.01))

    async def _listen_for_control(self) -> None:
        """Cancel requests (every worker), and shutdown broadcasts (``listen_for_shutdown``).
        It listens until the worker's services end, so a cancel still reaches a draining one."""
        channels = [CANCEL_CHANNEL]
        if self.listen_for_shutdown:
            channels.append(control_channel(self.queue_name))
        wait = Backoff(0.1, 5.0)
        while True:
            try:
                async with self.backends.events.subscribe(channels) as stream:
                    wait.reset()
                    async for event in stream:
                        # by content, not channel: a queue may be named "cancel"
                        request = parse_cancel(event.data)
                        if request is not None:
                            self.cancel(*request)
                        elif not self.stopping and is_shutdown_for(event.data, self.pool_id):
                            log.info("Shutdown requested; finishing %d running task(s)", self.running)
                            self.stop()
            except Exception as exc:
                log.warning("listening for control messages failed (%s); retrying in %.1fs", exc, wait.delay)
                await wait.sleep()



def _cancel_requested(detail: object) -> str | None:
    """The reason of the cancel request (``ax.cancel``'s line) in the activity, if it has one."""
    for line in reversed(getattr(detail, "logs", None) or []):
        message = getattr(line, "message", "") or ""
        if message.startswith(CANCEL_REQUESTED_PREFIX):
            return message[len(CANCEL_REQUESTED_PREFIX):]
    return None
