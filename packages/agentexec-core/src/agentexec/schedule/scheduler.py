"""The scheduler loop every pool runs: fire due schedules, each tick enqueued by exactly one pool.

High availability without a leader: every pool computes the same fire times (they are pure
functions of the clock, see :mod:`agentexec.schedule.timing`) and, for each due tick, asks the
result backend to ``claim`` the key ``schedule:<queue>:<name>:<timestamp>``. The claim is a
set-if-absent, so exactly one pool wins and enqueues the task; the others move on. Pool clocks
may disagree by up to the claim's lifetime (minutes) without a tick running twice.

Ticks are computed from the previous *intended* time, never from "now", so they do not drift.
A tick more than ``misfire_grace`` seconds late (the process was stopped, the loop stalled) is
skipped rather than run in a burst; a pool starting up begins with the next tick to come.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio

from agentexec import task_events
from agentexec.activity.metadata import validate_metadata
from agentexec.config import CONF
from agentexec.queueing import submit
from agentexec.runtime import Backends
from agentexec.schedule.changes import ScheduleWatch
from agentexec.schedule.schedule import Schedule, ScheduleError
from agentexec.task import Task, TaskDefinition

log = logging.getLogger("agentexec.schedule")

#: how long a tick's claim outlives the tick beyond its grace period (covers clock skew)
CLAIM_MARGIN = 300
#: the repeat budget of a schedule is kept this long (set-if-absent keys need a lifetime)
BUDGET_TTL = 10 * 365 * 86400
#: longest a firing may take (claim, activity, push) before it is abandoned
FIRE_TIMEOUT = 30.0
#: longest sleep between two looks at the clock (picks up new schedules and clock jumps)
MAX_SLEEP = 1.0


@dataclass(frozen=True)
class Firing:
    """One tick this scheduler enqueued."""

    schedule: str
    fire_time: datetime
    task: Task


class Scheduler:
    """The schedules of one pool, and the loop that fires them (``await scheduler.run(backends)``)."""

    def __init__(self, schedules: Iterable[Schedule] = (), *, queue_name: str | None = None) -> None:
        self.queue_name = queue_name
        self.schedules: dict[str, Schedule] = {}
        self._next: dict[str, datetime] = {}
        self._budget_floor: dict[str, int] = {}
        self._exhausted: set[str] = set()
        self._stopping = threading.Event()
        #: the registered tasks (the pool's), which runtime schedules are built against
        self.tasks: Mapping[str, TaskDefinition] = {}
        #: runtime schedule records as last applied (name -> JSON), and whether the code's
        #: schedules were written to the records yet (see agentexec.schedule.records)
        self._applied: dict[str, str] = {}
        self._upserted = False
        #: the change notices of the runtime schedules, while :meth:`run` runs
        self.watch: ScheduleWatch | None = None
        for schedule in schedules:
            self.add(schedule)

    # -- registry -----------------------------------------------------------------------
    def add(self, schedule: Schedule, *, replace: bool = False) -> Schedule:
        """Add ``schedule``; one of the same name raises :class:`ScheduleError`, unless
        ``replace`` (then it takes the other's place, with a fresh plan)."""
        if schedule.name in self.schedules:
            if not replace:
                raise ScheduleError(
                    f"a schedule named {schedule.name!r} already exists (task "
                    f"{self.schedules[schedule.name].task_name!r}); pass name='...' to tell them "
                    f"apart",
                    "name",
                )
            self.remove(schedule.name)
        self.schedules[schedule.name] = schedule
        return schedule

    def remove(self, name: str) -> None:
        self.schedules.pop(name, None)
        self._next.pop(name, None)
        self._budget_floor.pop(name, None)
        self._exhausted.discard(name)

    def __iter__(self) -> Iterator[Schedule]:
        return iter(list(self.schedules.values()))

    def __len__(self) -> int:
        return len(self.schedules)

    def __contains__(self, name: object) -> bool:
        return name in self.schedules

    def queue_for(self, schedule: Schedule) -> str:
        return schedule.queue_name or self.queue_name or CONF.queue_name

    def exhausted(self, name: str) -> bool:
        """True once this scheduler has seen the schedule's repeat budget used up."""
        return name in self._exhausted

    # -- the loop -----------------------------------------------------------------------
    def stop(self) -> None:
        """Fire nothing more; :meth:`run` returns within a second. Safe from any thread: a pool
        calls it when its shutdown begins, so ticks during a long drain are not queued up for a
        burst at the next start."""
        self._stopping.set()

    async def run(self, backends: Backends, stop: anyio.Event | None = None) -> None:
        """Fire due schedules until ``stop`` is set or :meth:`stop` is called (forever without
        either). Never raises for a failed firing: it is logged and the next tick is tried."""
        from agentexec.schedule.records import records_of

        stop = stop or anyio.Event()
        if self.schedules:
            log.info("scheduler: %d schedule(s): %s", len(self), ", ".join(self.schedules))
        # the schedule store is read when a change notice says so (schedule.changes), not
        # once a tick: an idle pool does not read it
        watch = ScheduleWatch(backends.events, self.queue_name or CONF.queue_name)
        self.watch = watch
        async with anyio.create_task_group() as tg:
            if records_of(backends) is not None:
                await tg.start(watch.run)
            while not (stop.is_set() or self._stopping.is_set()):
                if watch.take():
                    try:
                        await self.sync(backends)
                    except Exception as exc:  # the code's schedules still fire; the next tick retries
                        watch.stale()
                        log.warning("scheduler: could not read the runtime schedules: %s", exc)
                delay = await self.tick(backends)
                await watch.wait(delay, stop)
            tg.cancel_scope.cancel()

    async def sync(self, backends: Backends) -> None:
        """Match this scheduler's schedules to the queue's runtime schedule records (see
        :mod:`agentexec.schedule.records`): on the first call, write the code's schedules to
        them (the code wins at start); then add, replace or remove what the records say."""
        from agentexec.schedule.records import dumps, loads, records_of, schedule_of, spec_of

        records = records_of(backends)
        if records is None:
            return
        queue = self.queue_name or CONF.queue_name
        if not self._upserted:
            from agentexec.schedule.changes import announce

            for schedule in self:
                await records.put_schedule_record(queue, schedule.name, dumps(spec_of(schedule)))
            self._upserted = True
            if self.schedules:  # the other pools on the queue take the code's version too
                await announce(backends.events, queue, "*")
        rows = await records.schedule_records(queue)
        for name, raw in rows.items():
            if self._applied.get(name) == raw:
                continue
            self._applied[name] = raw
            try:
                spec = loads(raw)
            except ValueError as exc:
                log.warning("scheduler: runtime schedule %r is not readable, skipped: %s", name, exc)
                continue
            current = self.schedules.get(name)
            if current is not None and spec_of(current) == spec:
                continue  # as this scheduler has it (the code's own, written at start)
            definition = self.tasks.get(spec.task_name)
            if definition is None:
                log.warning("scheduler: runtime schedule %r runs task %r, which this pool does "
                            "not register; it fires from the pools that do", name, spec.task_name)
                self.remove(name)
                continue
            try:
                schedule = schedule_of(spec, definition)
            except ValueError as exc:  # ScheduleError: a record this pool's task model refuses
                log.warning("scheduler: runtime schedule %r is not valid here, skipped: %s", name, exc)
                continue
            if current is None:
                log.info("scheduler: runtime schedule %r added (%s)", name, schedule.timing.describe())
            self.add(schedule, replace=True)
        for name in [n for n in self._applied if n not in rows]:
            del self._applied[name]
            if name in self.schedules:
                log.info("scheduler: schedule %r deleted", name)
                self.remove(name)

    async def tick(self, backends: Backends, now: datetime | None = None) -> float:
        """Fire what is due at ``now``; returns the seconds until the next look."""
        now = now or datetime.now(UTC)
        for schedule in self:
            if self._stopping.is_set():
                break
            if not schedule.enabled or schedule.name in self._exhausted:
                continue
            due = self._due(schedule, now)
            if due is not None:
                try:
                    await self.fire(backends, schedule, due)
                except Exception:
                    log.exception("scheduler: schedule %r could not enqueue its %s tick",
                                  schedule.name, due.isoformat())
        pending = [
            (self._next[s.name] - now).total_seconds()
            for s in self
            if s.enabled and s.name in self._next and s.name not in self._exhausted
        ]
        return max(0.0, min([MAX_SLEEP, *pending]))

    def _due(self, schedule: Schedule, now: datetime) -> datetime | None:
        """The one tick to fire now (the latest one within the grace period), advancing the plan."""
        planned = self._next.get(schedule.name)
        if planned is None:  # first look: start with the next tick to come, never a past one
            self._next[schedule.name] = schedule.next_fire(now)
            return None
        if planned > now:
            return None
        grace = timedelta(seconds=schedule.misfire_grace)
        tick = planned
        if now - tick > grace:
            tick = schedule.next_fire(now - grace)
        while tick <= now and (later := schedule.next_fire(tick)) <= now:
            tick = later
        if tick != planned:
            log.warning(
                "scheduler: schedule %r skipped ticks from %s (more than %ss late)",
                schedule.name, planned.isoformat(), schedule.misfire_grace,
            )
        if tick > now:
            self._next[schedule.name] = tick
            return None
        self._next[schedule.name] = schedule.next_fire(tick)
        return tick

    # -- one firing ---------------------------------------------------------------------
    async def fire(self, backends: Backends, schedule: Schedule, tick: datetime) -> Firing | None:
        """Enqueue the task for ``tick`` unless another scheduler already has (or the budget is spent).

        Shielded from cancellation: a claimed tick belongs to this scheduler alone, so a pool
        shutting down finishes enqueueing it rather than lose it (or leave a QUEUED activity with
        no task behind it). ``FIRE_TIMEOUT`` bounds the wait on a backend that hangs.
        """
        with anyio.move_on_after(FIRE_TIMEOUT, shield=True) as scope:
            return await self._fire(backends, schedule, tick)
        if scope.cancelled_caught:
            log.error("scheduler: schedule %r gave up on its %s tick after %ss (backend too slow)",
                      schedule.name, tick.isoformat(), FIRE_TIMEOUT)
        return None

    async def _fire(self, backends: Backends, schedule: Schedule, tick: datetime) -> Firing | None:
        queue_name = self.queue_for(schedule)
        key = f"schedule:{queue_name}:{schedule.name}:{int(tick.timestamp())}"
        if not await backends.results.claim(key, int(schedule.misfire_grace) + CLAIM_MARGIN):
            return None
        if schedule.firings is not None and not await self._spend_budget(backends, schedule, queue_name):
            return None
        return await self._enqueue(backends, schedule, tick, queue_name)

    async def _enqueue(self, backends: Backends, schedule: Schedule, tick: datetime, queue_name: str) -> Firing:
        task = Task.create(schedule.task_name, schedule.context)
        task.priority = schedule.priority
        task.queue_name = queue_name
        # the schedule's own metadata (a tenant ...) keeps its keys; ours fill in beside them
        task.metadata = validate_metadata({
            "schedule": schedule.name, "scheduled_for": tick.isoformat(), **(schedule.metadata or {}),
        })
        # a push that fails ends the task with a reason (never a QUEUED activity with no task)
        await submit([task], backends, behind=False, announce=False)
        log.info("scheduler: %r enqueued %r (%s) for %s", schedule.name, schedule.task_name,
                 task.agent_id, tick.isoformat())
        await task_events.publish_now(task_events.schedule_fired(
            schedule.name, schedule.task_name, task.agent_id, tick, queue_name, task.metadata
        ), backends.events)
        return Firing(schedule.name, tick, task)

    async def _spend_budget(self, backends: Backends, schedule: Schedule, queue_name: str) -> bool:
        """Take the lowest free firing slot 1..firings, shared by every pool; False when none is left."""
        firings = schedule.firings
        assert firings is not None
        prefix = f"schedule:{queue_name}:{schedule.name}:{schedule.fingerprint}:run"
        slot = self._budget_floor.get(schedule.name, 1)
        while slot <= firings:
            won = await backends.results.claim(f"{prefix}:{slot}", BUDGET_TTL)
            slot += 1
            self._budget_floor[schedule.name] = slot
            if won:
                if slot > firings:
                    self._finish(schedule)
                return True
        self._finish(schedule)
        return False

    def _finish(self, schedule: Schedule) -> None:
        self._exhausted.add(schedule.name)
        log.info("scheduler: schedule %r has fired its %d time(s); it is done", schedule.name,
                 schedule.firings or 0)
