"""Schedules: run registered tasks on cron expressions or intervals, in every pool, once per tick.

::

    @pool.schedule("cleanup", every="1 hour", context=CleanupContext(days=7))
    async def cleanup(agent_id: UUID, context: CleanupContext) -> None: ...

    pool.add_schedule("report", cron="0 9 * * 1-5", timezone="Europe/Paris", repeat=10)
    pool.load_schedules("schedules.yaml")      # or: agentexec run app:pool --schedules schedules.yaml

Each firing is an ordinary task (its own activity, its own result). See
:mod:`agentexec.schedule.scheduler` for how several pools agree on who enqueues a tick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentexec.schedule.file import ScheduleFileError, load_schedules, parse_schedules
    from agentexec.schedule.pool_api import SchedulingMixin
    from agentexec.schedule.schedule import Schedule, ScheduleError, build_schedule
    from agentexec.schedule.scheduler import Firing, Scheduler
    from agentexec.schedule.timing import CronTiming, IntervalTiming, make_timing, parse_interval

#: imported on first use: a pool needs the scheduler, not the YAML reader (nor croniter, until a
#: cron schedule exists)
_WHERE = {
    "ScheduleFileError": "file", "load_schedules": "file", "parse_schedules": "file",
    "SchedulingMixin": "pool_api",
    "Schedule": "schedule", "ScheduleError": "schedule", "build_schedule": "schedule",
    "Firing": "scheduler", "Scheduler": "scheduler",
    "CronTiming": "timing", "IntervalTiming": "timing", "make_timing": "timing",
    "parse_interval": "timing",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agentexec.schedule' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"agentexec.schedule.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CronTiming",
    "Firing",
    "IntervalTiming",
    "Schedule",
    "ScheduleError",
    "ScheduleFileError",
    "Scheduler",
    "SchedulingMixin",
    "build_schedule",
    "load_schedules",
    "make_timing",
    "parse_interval",
    "parse_schedules",
]
