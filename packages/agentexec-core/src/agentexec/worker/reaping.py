"""What the pool writes when the queue hands a task out again or gives up on it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from agentexec import task_events
from agentexec.activity.schemas import ActivityDetailSchema
from agentexec.activity.status import Status
from agentexec.backends import (
    ActivityStore,
    ConsumerReaper,
    InFlightView,
    ReapReport,
    RequeueLine,
    StagedResults,
    UnknownActivityError,
)
from agentexec.config import CONF
from agentexec.faults import describe, error_message, is_transient
from agentexec.results import Outcome
from agentexec.runtime import Backends
from agentexec.task import Envelope

log = logging.getLogger("agentexec.worker")

REQUEUED_MESSAGE = "Its worker stopped before the task finished; queued again (attempt {attempt} of {max})."
LOST_RESULT_MESSAGE = (
    "the task completed, but its worker died before storing its result, and the task had "
    "used up its attempts (max_attempts), so it was not run again for it"
)
RELEASED_MESSAGE = "The worker shut down before the task finished; queued again."


async def settle(
    backends: Backends, report: ReapReport, *, marked: bool = False, since: datetime | None = None
) -> None:
    """Record a reap: requeued tasks read QUEUED again, dead-lettered ones ERROR with a failed
    outcome (so ``ax.get_result`` raises ``TaskFailedError`` instead of waiting).
    ``marked``: the QUEUED lines were written before the reap (:func:`mark_requeued`).
    ``since``: when the reap began; a task with a line from then on was already taken again by
    another worker (the reap handed it out before this ran), whose lines stand."""
    activity = backends.activity
    failed = _Failures("recording the requeue of")
    for env in () if marked else report.requeued:
        log.warning(
            "Task %s (%s) handed out again: its worker stopped (attempt %d of %d)",
            env.task_name, env.agent_id, env.attempts + 1, backends.queue.max_attempts,
        )
    for env in () if marked else report.requeued:
        try:
            # only a RUNNING activity goes back to QUEUED: if a worker already took the task
            # again and finished it, its COMPLETE must stay the last word
            current = await activity.adetail(env.agent_id)
            if current is not None and current.status is Status.RUNNING and not _taken_again(current, since):
                await requeue_line(
                    activity, env.agent_id,
                    REQUEUED_MESSAGE.format(attempt=env.attempts + 1, max=backends.queue.max_attempts),
                    read=current,
                )
        except UnknownActivityError:
            pass
        except Exception as exc:
            failed.add(env.agent_id, exc)
            if is_transient(exc, activity):
                break  # the store is down: the rest would fail the same way
    failed.report(len(report.requeued))
    lines = _Failures("recording the dead letter of")
    outcomes = _Failures("storing the failure of")
    # no worker will tell of these tasks' end: the reaper does (lifecycle events)
    events: list[tuple[str, str]] = []
    for dead in report.dead:
        log.error("Task dead-lettered on %s: %s", dead.queue_name, dead.reason)
        if dead.envelope is None:
            continue
        env = dead.envelope
        if await _finished_before(backends, env, events):
            continue
        message = error_message(dead.reason)
        if CONF.lifecycle_events:
            events.append(
                ("task.failed", task_events.encode_task(env.agent_id, env.task_name, Status.ERROR, env.metadata, message))
            )
        try:
            await activity.aappend(env.agent_id, message, Status.ERROR)
        except UnknownActivityError:
            pass
        except Exception as exc:
            lines.add(env.agent_id, exc)
        try:
            outcome = Outcome.failed(env.task_name, dead.reason, env.attempts + 1)
            await backends.results.set(env.agent_id, outcome.encode(), CONF.result_ttl)
        except Exception as exc:
            outcomes.add(env.agent_id, exc)
    lines.report()
    outcomes.report()
    await task_events.publish_now(events, backends.events)


def _taken_again(detail: ActivityDetailSchema, since: datetime | None) -> bool:
    """Whether the activity has a line from ``since`` (a reap's start) on: another worker took
    the task again. A store's naive time is UTC."""
    if since is None or not detail.logs:
        return False
    last = detail.logs[-1].created_at
    return (last if last.tzinfo is not None else last.replace(tzinfo=UTC)) >= since


async def _finished_before(backends: Backends, env: Envelope, events: list[tuple[str, str]]) -> bool:
    """A dead-lettered task may have finished before its last worker died (between its final
    line and its ack): its final state stands, and the dead letter only records the lost lease.
    Its outcome is stored from what was staged; a final line is written only where none is.
    False when nothing says it finished (or nothing can be read): it failed, as the reap says."""
    results, activity = backends.results, backends.activity
    try:
        if await results.get(env.agent_id) is not None:
            return True
        staged = await results.staged(env.agent_id) if isinstance(results, StagedResults) else None
        detail = await activity.adetail(env.agent_id)
    except Exception:
        return False
    status = None if detail is None else detail.status
    final = status in (Status.COMPLETE, Status.ERROR, Status.CANCELED)
    if staged is not None:
        outcome = Outcome.decode(staged)
        if not final:
            if outcome.status == "ok":
                line, end = CONF.activity_message_complete, Status.COMPLETE
                await activity.aappend(env.agent_id, line, end, 100)
            else:
                line, end = error_message(outcome.error or "failed"), Status.ERROR
                await activity.aappend(env.agent_id, line, end)
            if CONF.lifecycle_events:  # its worker died before it could tell
                event = task_events.EVENT_OF_STATUS[end]
                events.append((event, task_events.encode_task(env.agent_id, env.task_name, end, env.metadata, line)))
    elif final and detail is not None and status is not None:
        reason = (
            LOST_RESULT_MESSAGE if status is Status.COMPLETE
            else detail.logs[-1].message if detail.logs else status.value
        )
        outcome = Outcome.failed(env.task_name, reason, env.attempts + 1)
    else:
        return False
    log.info("Task %s (%s) had finished before its worker died; its final state stands", env.task_name, env.agent_id)
    await results.set(env.agent_id, outcome.encode(), CONF.result_ttl)
    return True


async def requeue_line(
    activity: ActivityStore, agent_id: UUID, message: str, read: ActivityDetailSchema | None = None
) -> None:
    """The QUEUED line of a reaped task, only while its activity reads RUNNING: decided under
    the activity's lock where the store can (:class:`~agentexec.backends.RequeueLine`; the last
    line a killed worker sent may still commit on a database server after any earlier check),
    else checked first (``read``: the activity as the caller has just read it)."""
    if isinstance(activity, RequeueLine):
        await activity.arequeue(agent_id, message)
        return
    current = read if read is not None else await activity.adetail(agent_id)
    if current is not None and current.status is Status.RUNNING:
        await activity.aappend(agent_id, message, Status.QUEUED)


async def mark_requeued(backends: Backends, held: list[Envelope]) -> None:
    """Before a dead consumer's tasks are handed out again: the QUEUED line of each one whose
    activity says RUNNING and that will be requeued (not dead-lettered). Written first, it
    comes before the RUNNING line of whichever worker takes the task next. The dead worker's
    own last line may still commit on a database server after it died (PostgreSQL runs the
    statement it had received): :func:`requeue_line` then leaves the QUEUED line out."""
    queue, activity = backends.queue, backends.activity
    failed = _Failures("recording the requeue of")
    for env in held:
        if env.attempts + 1 >= queue.max_attempts:
            continue  # dead-lettered: settle() writes its ERROR line
        try:
            await requeue_line(
                activity, env.agent_id, REQUEUED_MESSAGE.format(attempt=env.attempts + 2, max=queue.max_attempts)
            )
        except UnknownActivityError:
            pass
        except Exception as exc:
            failed.add(env.agent_id, exc)
            if is_transient(exc, activity):
                break  # the store is down: the rest would fail the same way, one timeout each
    failed.report(len(held))


class _Failures:
    """Failures of one step over many tasks, logged as one line (an outage of the activity
    store fails them all the same way)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failed: list[tuple[object, Exception]] = []

    def add(self, agent_id: object, exc: Exception) -> None:
        self.failed.append((agent_id, exc))

    def report(self, of: int | None = None) -> None:
        if not self.failed:
            return
        first, exc = self.failed[0]
        count = max(len(self.failed), of or 0)
        if count == 1:
            log.error("%s %s failed: %s", self.what, first, describe(exc))
        else:
            log.error("%s %d tasks failed (%s, first %s)", self.what, count, describe(exc), first)


async def reap_consumer(backends: Backends, queue_name: str, consumer_id: str) -> bool:
    """Hand out again, now, the tasks a dead consumer held; False when the queue cannot (its
    tasks then return after ``lease_timeout``, through the periodic reap)."""
    queue = backends.queue
    if not isinstance(queue, ConsumerReaper):
        return False
    marked = False
    if isinstance(queue, InFlightView):
        await mark_requeued(backends, await queue.in_flight(queue_name, consumer_id))
        marked = True
    report = await queue.reap_consumer(queue_name, consumer_id)
    for env in report.requeued if marked else ():
        log.warning(
            "Task %s (%s) handed out again: its worker stopped (attempt %d of %d)",
            env.task_name, env.agent_id, env.attempts + 1, queue.max_attempts,
        )
    await settle(backends, report, marked=marked)
    return True


async def reap(backends: Backends, queue_name: str) -> None:
    """The periodic reap of expired leases. Its QUEUED lines come after the tasks are handed
    out, one task after another, so a pool's idle workers may take and run a task first: a
    line of that run from the reap's start on means the task is running (or done) again, and
    no QUEUED line follows it (seen with a pool restarted after its main process was killed:
    a 50 ms task's QUEUED line landed after its second run's COMPLETE)."""
    since = datetime.now(UTC)
    await settle(backends, await backends.queue.reap(queue_name), since=since)
