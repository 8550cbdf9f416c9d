"""Runtime schedules: schedules kept in the backend, so they can be created, changed, enabled,
disabled and deleted while pools run (``await ax.schedules.create(...)``, the HTTP API).

Where they live: the result backend's :class:`~agentexec.backends.ScheduleRecords` (a hash per
queue on Redis, the ``{prefix}schedule`` table on SQL, a dict in memory), one JSON
:class:`ScheduleSpec` per schedule name.

How they take effect: every write publishes a change notice (:mod:`agentexec.schedule.changes`);
every pool's scheduler, woken by it, reads its queue's records (else only once a minute) and
adds, replaces or removes its schedules to match, within one tick; firing is unchanged, so the one-firing-per-tick guarantee (the claim
on ``schedule:<queue>:<name>:<tick>``) holds for them as for any schedule.

Code and YAML schedules are written to the records when a pool starts (an upsert: **the code
wins at start**, so a deploy restores what the code says); from then on **the records win**:
a schedule changed, disabled or deleted at runtime stays so until a pool starts again with a
schedule of that name in its code or YAML.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from agentexec.backends import ScheduleRecords
from agentexec.schedule.changes import announce
from agentexec.schedule.schedule import Schedule, ScheduleError, build_schedule
from agentexec.schedule.timing import CronTiming, IntervalTiming, parse_interval
from agentexec.task import Priority, TaskDefinition

if TYPE_CHECKING:
    from agentexec.runtime import Backends

log = logging.getLogger("agentexec.schedule")


class ScheduleSpec(BaseModel):
    """A schedule as stored and as the HTTP API shows it. ``cron`` or ``every`` (seconds)."""

    name: str
    task_name: str
    cron: str | None = None
    every: float | None = None
    context: dict[str, Any] = {}
    timezone: str = "UTC"
    repeat: int | None = None
    priority: Priority = Priority.LOW
    enabled: bool = True
    description: str | None = None
    metadata: dict[str, Any] | None = None
    misfire_grace: float = 60.0


def spec_of(schedule: Schedule) -> ScheduleSpec:
    timing = schedule.timing
    return ScheduleSpec(
        name=schedule.name,
        task_name=schedule.task_name,
        cron=timing.expression if isinstance(timing, CronTiming) else None,
        every=timing.period.total_seconds() if isinstance(timing, IntervalTiming) else None,
        context=schedule.context.model_dump(mode="json"),
        timezone=schedule.timezone,
        repeat=schedule.repeat,
        priority=schedule.priority,
        enabled=schedule.enabled,
        description=schedule.description,
        metadata=schedule.metadata,
        misfire_grace=schedule.misfire_grace,
    )


def schedule_of(spec: ScheduleSpec, definition: TaskDefinition) -> Schedule:
    return build_schedule(
        definition, cron=spec.cron, every=spec.every, context=spec.context, name=spec.name,
        timezone=spec.timezone, repeat=spec.repeat, priority=spec.priority, enabled=spec.enabled,
        description=spec.description, misfire_grace=spec.misfire_grace, metadata=spec.metadata,
    )


def dumps(spec: ScheduleSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


def loads(raw: str) -> ScheduleSpec:
    return ScheduleSpec.model_validate_json(raw)


def records_of(backends: Backends) -> ScheduleRecords | None:
    results = backends.results
    return results if isinstance(results, ScheduleRecords) else None


def _records(backends: Backends) -> ScheduleRecords:
    found = records_of(backends)
    if found is None:
        raise ScheduleError(
            f"the result backend {type(backends.results).__name__} cannot keep runtime schedules "
            f"(it lacks ScheduleRecords); define schedules in code or YAML instead"
        )
    return found


def _definition(task_name: str, queue_name: str) -> TaskDefinition:
    """The registered definition of ``task_name``: its context model validates the context."""
    from agentexec.registry import _pools

    for pool in builtins.list(_pools):
        if getattr(pool, "queue_name", None) == queue_name and task_name in pool.tasks:
            definition: TaskDefinition = pool.tasks[task_name]
            return definition
    known = sorted({n for p in builtins.list(_pools) if getattr(p, "queue_name", None) == queue_name for n in p.tasks})
    raise ScheduleError(
        f"unknown task {task_name!r} on queue {queue_name!r}: this process must import the pool "
        f"that registers it (tasks known here: {', '.join(known) or 'none'})",
        "task_name",
    )


def _queue(queue_name: str | None) -> str:
    from agentexec.config import CONF

    return queue_name or CONF.queue_name


def _backends() -> Backends:
    from agentexec.runtime import get_backends

    return get_backends()


# -- the Python API: ax.schedules ---------------------------------------------------------------
async def list(queue_name: str | None = None) -> builtins.list[ScheduleSpec]:
    """Every runtime schedule of the queue (code and YAML ones included once a pool started)."""
    rows = await _records(_backends()).schedule_records(_queue(queue_name))
    return sorted((loads(raw) for raw in rows.values()), key=lambda s: s.name)


async def get(name: str, queue_name: str | None = None) -> ScheduleSpec | None:
    rows = await _records(_backends()).schedule_records(_queue(queue_name))
    raw = rows.get(name)
    return None if raw is None else loads(raw)


async def create(
    task_name: str,
    *,
    cron: str | None = None,
    every: str | int | float | timedelta | None = None,
    context: BaseModel | Mapping[str, Any] | None = None,
    name: str | None = None,
    timezone: str | None = None,
    repeat: int | str | None = None,
    priority: Priority | str = Priority.LOW,
    enabled: bool = True,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    misfire_grace: float = 60.0,
    queue_name: str | None = None,
    replace: bool = False,
) -> ScheduleSpec:
    """Create a schedule of the registered task ``task_name`` in the backend; every pool on the
    queue fires it from its next tick on. Checked like ``pool.add_schedule`` (a
    :class:`ScheduleError` names the field); a name already taken raises unless ``replace``."""
    queue = _queue(queue_name)
    schedule = build_schedule(
        _definition(task_name, queue), cron=cron, every=every, context=context, name=name,
        timezone=timezone, repeat=repeat, priority=priority, enabled=enabled,  # type: ignore[arg-type]
        description=description, metadata=metadata, misfire_grace=misfire_grace,
    )
    backends = _backends()
    records = _records(backends)
    spec = spec_of(schedule)
    if replace:
        await records.put_schedule_record(queue, spec.name, dumps(spec))
    elif not await records.add_schedule_record(queue, spec.name, dumps(spec)):
        # set-if-absent in the backend: of concurrent creates of one name, exactly one wins
        raise ScheduleError(
            f"a schedule named {schedule.name!r} already exists; update it, or delete it first",
            "name", f"schedule {schedule.name!r}",
        )
    await announce(backends.events, queue, spec.name)
    return spec


async def update(name: str, queue_name: str | None = None, **changes: Any) -> ScheduleSpec:
    """Change fields of a schedule (``cron=`` or ``every=`` replaces the rule); checked as
    :func:`create` is. ``LookupError`` when there is no such schedule."""
    queue = _queue(queue_name)
    current = await get(name, queue)
    if current is None:
        raise LookupError(f"no schedule named {name!r} on queue {queue!r}")
    unknown = set(changes) - set(ScheduleSpec.model_fields) - {"name"}
    if unknown or "name" in changes or "task_name" in changes:
        raise ScheduleError(
            f"cannot change {', '.join(sorted(unknown | ({'name', 'task_name'} & set(changes))))}: "
            f"create another schedule instead", next(iter(sorted(unknown or changes))),
        )
    fields = current.model_dump()
    if changes.get("cron") is not None:
        fields["every"] = None
    if changes.get("every") is not None:
        fields["cron"] = None
        every = changes.pop("every")
        changes["every"] = parse_interval(every).total_seconds() if not isinstance(every, int | float) else every
    fields.update(changes)
    try:
        spec = ScheduleSpec.model_validate(fields)
    except ValidationError as exc:
        raise ScheduleError(str(exc), None, f"schedule {name!r}") from None
    checked = spec_of(schedule_of(spec, _definition(spec.task_name, queue)))
    backends = _backends()
    await _records(backends).put_schedule_record(queue, name, dumps(checked))
    await announce(backends.events, queue, name)
    return checked


async def enable(name: str, queue_name: str | None = None) -> ScheduleSpec:
    return await update(name, queue_name, enabled=True)


async def disable(name: str, queue_name: str | None = None) -> ScheduleSpec:
    """Stop firing the schedule (in every pool, from its next tick) and keep it."""
    return await update(name, queue_name, enabled=False)


async def delete(name: str, queue_name: str | None = None) -> bool:
    """Delete the schedule from the backend; True when there was one."""
    backends, queue = _backends(), _queue(queue_name)
    deleted = await _records(backends).delete_schedule_record(queue, name)
    if deleted:
        await announce(backends.events, queue, name)
    return deleted

