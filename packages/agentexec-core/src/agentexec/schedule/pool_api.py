"""The scheduling methods of ``ax.Pool``: ``@pool.schedule``, ``pool.add_schedule``, ``pool.load_schedules``.

Kept apart from the pool so the pool only has to inherit :class:`SchedulingMixin` and run
``pool.scheduler.run(backends, stop)`` in its main process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, tzinfo
from os import PathLike
from typing import Any, Protocol, TypeVar, cast

from pydantic import BaseModel

from agentexec.schedule.schedule import Repeat, Schedule, ScheduleError, build_schedule
from agentexec.schedule.scheduler import Scheduler
from agentexec.task import Priority, TaskDefinition

F = TypeVar("F", bound=Callable[..., Any])


class _Registrar(Protocol):
    def task(self, name: str) -> Callable[[Any], Any]: ...


class SchedulingMixin:
    """Needs ``self.tasks`` (name -> TaskDefinition) and ``self.task(name)``; reads ``self.queue_name``."""

    tasks: dict[str, TaskDefinition]

    @property
    def scheduler(self) -> Scheduler:
        sched: Scheduler | None = self.__dict__.get("_scheduler")
        if sched is None:
            sched = Scheduler(queue_name=getattr(self, "queue_name", None))
            self.__dict__["_scheduler"] = sched
        return sched

    @property
    def schedules(self) -> dict[str, Schedule]:
        """The pool's schedules by name."""
        return self.scheduler.schedules

    def add_schedule(
        self,
        task_name: str,
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
    ) -> Schedule:
        """Run the registered task ``task_name`` on a schedule: ``cron="*/5 * * * *"`` or
        ``every="5 minutes"``, in ``timezone`` (default ``CONF.timezone``), ``repeat`` times
        (default forever; ``"once"``), with ``context`` (a model instance or a dict validated
        against the task's context model; default the model with no arguments)."""
        definition = self.tasks.get(task_name)
        if definition is None:
            known = ", ".join(sorted(self.tasks)) or "none yet"
            raise ScheduleError(
                f"unknown task {task_name!r}: register it first with @pool.task({task_name!r}) "
                f"(registered tasks: {known})",
                "task", f"schedule {name or task_name!r}",
            )
        schedule = build_schedule(
            definition, cron=cron, every=every, context=context, name=name, timezone=timezone,
            repeat=repeat, priority=priority, queue_name=queue_name, start=start, enabled=enabled,
            description=description, misfire_grace=misfire_grace,
        )
        return self.scheduler.add(schedule)

    def schedule(
        self,
        task_name: str,
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
    ) -> Callable[[F], F]:
        """``@pool.schedule("cleanup", every="1 hour")``: register the handler as task
        ``task_name`` (like ``@pool.task``) and schedule it (like :meth:`add_schedule`)."""

        def decorator(handler: F) -> F:
            registered: F = cast(_Registrar, self).task(task_name)(handler)
            self.add_schedule(
                task_name, cron=cron, every=every, context=context, name=name, timezone=timezone,
                repeat=repeat, priority=priority, queue_name=queue_name, start=start,
                enabled=enabled, description=description, misfire_grace=misfire_grace,
            )
            return registered

        return decorator

    def load_schedules(self, path: str | PathLike[str]) -> list[Schedule]:
        """Add the schedules of a YAML file (see :func:`agentexec.schedule.load_schedules`)."""
        from agentexec.schedule.file import load_schedules

        return load_schedules(path, self)
