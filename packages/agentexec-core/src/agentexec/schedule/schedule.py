"""``Schedule``: one recurring firing of a registered task, validated when it is defined."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from agentexec.activity.metadata import validate_metadata
from agentexec.schedule.timing import Timing, make_timing, zone_name
from agentexec.task import Priority, TaskDefinition

Repeat = int | Literal["forever", "once"] | None
#: ``repeat=-1``: no end (the original agentexec's ``REPEAT_FOREVER``)
REPEAT_FOREVER = -1


class ScheduleError(ValueError):
    """A schedule that cannot be defined as written: ``where`` (which schedule), ``field`` (which
    setting) and ``reason`` (what is wrong and how to fix it)."""

    def __init__(self, reason: str, field: str | None = None, where: str | None = None) -> None:
        self.reason = reason
        self.field = field
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)


@dataclass
class Schedule:
    """Enqueue ``task_name`` with ``context`` whenever ``timing`` fires.

    ``repeat`` is how many more firings follow the first, as in the original agentexec (``0``:
    fire once; ``None``: forever); :attr:`firings` is the total. The budget is counted across
    every pool, and across restarts while the backend keeps its claims. ``metadata`` goes on
    the activity of every firing (beside ``schedule`` and ``scheduled_for``).
    """

    name: str
    task_name: str
    context: BaseModel
    timing: Timing
    repeat: int | None = None
    priority: Priority = Priority.LOW
    queue_name: str | None = None
    enabled: bool = True
    description: str | None = None
    #: seconds a tick may be late and still fire (a stalled loop); older ticks are skipped
    misfire_grace: float = 60.0
    source: str | None = field(default=None, compare=False)  # "file.yaml: tasks[2]" when loaded
    metadata: dict[str, Any] | None = None

    @property
    def timezone(self) -> str:
        return zone_name(self.timing.tz)

    @property
    def firings(self) -> int | None:
        """Total firings: ``repeat + 1``; ``None`` for forever."""
        return None if self.repeat is None else self.repeat + 1

    @property
    def identity(self) -> str:
        """What the original agentexec told schedules apart by: the task, its rule (with the
        timezone) and its context. Adding an unnamed schedule with the identity of one the
        pool has replaces it."""
        raw = json.dumps(
            [self.task_name, self.timing.describe(), self.timezone,
             self.context.model_dump(mode="json")],
            sort_keys=True, default=str,
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:8]

    @property
    def fingerprint(self) -> str:
        """Changes when what the schedule does changes, so an edited schedule gets a fresh budget."""
        parts: list[Any] = [self.task_name, self.timing.describe(), self.timezone, self.repeat,
                            self.context.model_dump(mode="json")]
        if self.metadata is not None:
            parts.append(self.metadata)
        raw = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]

    def next_fire(self, after: datetime) -> datetime:
        return self.timing.next_after(after)

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        times: list[datetime] = []
        moment = after
        limit = count if self.firings is None else min(count, self.firings)
        for _ in range(limit):
            moment = self.timing.next_after(moment)
            times.append(moment)
        return times


def build_schedule(
    definition: TaskDefinition,
    *,
    cron: str | None = None,
    every: str | int | float | timedelta | None = None,
    context: BaseModel | Mapping[str, Any] | None = None,
    name: str | None = None,
    timezone: str | tzinfo | None = None,
    repeat: Repeat = None,
    priority: Priority | str = Priority.LOW,
    queue_name: str | None = None,
    start: datetime | str | None = None,
    enabled: bool = True,
    description: str | None = None,
    misfire_grace: float = 60.0,
    metadata: Mapping[str, Any] | None = None,
) -> Schedule:
    """A :class:`Schedule` for a registered task, every argument checked (``ScheduleError`` names the field)."""
    schedule_name = name or definition.name
    where = f"schedule {schedule_name!r}"
    try:
        checked_metadata = validate_metadata(metadata)
    except (TypeError, ValueError) as exc:
        raise ScheduleError(str(exc), "metadata", where) from None
    try:
        timing = make_timing(cron=cron, every=every, timezone=timezone, start=start)
    except ValueError as exc:
        culprit = (
            "timezone" if "timezone" in str(exc) else "start" if "start" in str(exc)
            else "cron" if cron is not None else "every"
        )
        raise ScheduleError(str(exc), culprit, where) from None
    return Schedule(
        name=schedule_name,
        task_name=definition.name,
        context=validate_context(definition, context, where),
        timing=timing,
        repeat=parse_repeat(repeat, where),
        priority=parse_priority(priority, where),
        queue_name=queue_name,
        enabled=bool(enabled),
        description=description,
        misfire_grace=_grace(misfire_grace, where),
        metadata=checked_metadata,
    )


def validate_context(
    definition: TaskDefinition, context: BaseModel | Mapping[str, Any] | None, where: str
) -> BaseModel:
    model = definition.context_class
    try:
        if context is None:
            return model()
        return definition.validate_context(dict(context) if isinstance(context, Mapping) else context)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            + (f" (got {err['input']!r})" if "input" in err and err["type"] != "missing" else "")
            for err in exc.errors()
        )
        hint = " (no context= given, and the model has required fields)" if context is None else ""
        raise ScheduleError(
            f"context does not validate against {model.__qualname__} of task "
            f"{definition.name!r}{hint}: {problems}",
            "context", where,
        ) from None
    except TypeError as exc:
        raise ScheduleError(f"invalid context: {exc}", "context", where) from None


def parse_repeat(repeat: Any, where: str) -> int | None:
    """The original agentexec's ``repeat``: how many more firings after the first (``0`` or
    ``"once"``: one firing; ``-1``, ``None`` or ``"forever"``: no end)."""
    if repeat is None or repeat == "forever" or repeat == REPEAT_FOREVER:
        return None
    if repeat == "once":
        return 0
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
        raise ScheduleError(
            f"repeat must be how many more times to fire after the first (0 = once), -1 or "
            f"'forever' (no end), or 'once'; got {repeat!r}",
            "repeat", where,
        )
    return repeat


def parse_priority(priority: Any, where: str) -> Priority:
    if isinstance(priority, Priority):
        return priority
    if isinstance(priority, str):
        try:
            return Priority(priority.lower())
        except ValueError:
            pass
    raise ScheduleError(f"priority must be 'high' or 'low', got {priority!r}", "priority", where)


def _grace(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScheduleError(
            f"misfire_grace must be a number of seconds >= 0, got {value!r}", "misfire_grace", where
        )
    return float(value)
