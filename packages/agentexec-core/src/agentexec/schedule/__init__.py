"""Schedules: run registered tasks on cron expressions or intervals, in every pool, once per tick.

::

    @pool.schedule("cleanup", every="1 hour", context=CleanupContext(days=7))
    async def cleanup(agent_id: UUID, context: CleanupContext) -> None: ...

    pool.add_schedule("report", cron="0 9 * * 1-5", timezone="Europe/Paris", repeat=10)
    pool.load_schedules("schedules.yaml")      # or: agentexec run app:pool --schedules schedules.yaml

Each firing is an ordinary task (its own activity, its own result). See
:mod:`agentexec.schedule.scheduler` for how several pools agree on who enqueues a tick.
"""

from agentexec.schedule.file import ScheduleFileError, load_schedules, parse_schedules
from agentexec.schedule.pool_api import SchedulingMixin
from agentexec.schedule.schedule import Schedule, ScheduleError, build_schedule
from agentexec.schedule.scheduler import Firing, Scheduler
from agentexec.schedule.timing import CronTiming, IntervalTiming, make_timing, parse_interval

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
