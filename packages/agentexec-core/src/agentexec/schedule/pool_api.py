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
from agentexec.schedule.timing import looks_like_cron
from agentexec.task import Priority, TaskDefinition

F = TypeVar("F", bound=Callable[..., Any])


class _Registrar(Protocol):
    def task(self, name: str, **options: Any) -> Callable[[Any], Any]: ...


def _rule(
    rule: Any, cron: str | None, every: Any, where: str
) -> tuple[str | None, str | int | float | timedelta | None]:
    """``(cron, every)`` from the positional ``rule`` and the keywords. A cron expression given
    as ``rule`` or as ``every=`` (the original agentexec's keyword for it) is taken as ``cron``."""
    if rule is not None:
        if cron is not None or every is not None:
            raise ScheduleError(
                "give the rule once: as the second argument, or as cron= / every=", "cron", where
            )
        every = rule
    if cron is None and looks_like_cron(every):
        cron, every = str(every), None
    return cron, every


class SchedulingMixin:
    """Needs ``self.tasks`` (name -> TaskDefinition) and ``self.task(name)``; reads ``self.queue_name``."""

    tasks: dict[str, TaskDefinition]

    @property
    def scheduler(self) -> Scheduler:
        sched: Scheduler | None = self.__dict__.get("_scheduler")
        if sched is None:
            sched = Scheduler(queue_name=getattr(self, "queue_name", None))
            sched.tasks = self.tasks  # the live dict: tasks registered later count too
            self.__dict__["_scheduler"] = sched
        return sched

    @property
    def schedules(self) -> dict[str, Schedule]:
        """The pool's schedules by name."""
        return self.scheduler.schedules

    def add_schedule(
        self,
        task_name: str,
        rule: str | int | float | timedelta | None = None,
        context: BaseModel | Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: str | int | float | timedelta | None = None,
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
        """Run the registered task ``task_name`` on a schedule: ``cron="*/5 * * * *"`` or
        ``every="5 minutes"`` (or either as the second argument, ``rule``, as the original
        agentexec wrote it: ``pool.add_schedule("refresh", "*/5 * * * *", ctx)``), in
        ``timezone`` (default ``CONF.timezone``), with ``context`` (a model instance or a dict
        validated against the task's context model; default the model with no arguments).

        ``repeat``: how many more firings after the first (``0`` or ``"once"``: one firing;
        ``None``, ``-1`` or ``"forever"``: no end). ``metadata`` goes on each firing's activity.

        Without ``name=``, a schedule is named after its task; adding another unnamed schedule
        of the task with the same rule and context replaces it, one with a different rule or
        context is added beside it (named ``task@<hash>``). A ``name=`` already taken raises
        :class:`ScheduleError`.
        """
        definition = self.tasks.get(task_name)
        if definition is None:
            known = ", ".join(sorted(self.tasks)) or "none yet"
            raise ScheduleError(
                f"unknown task {task_name!r}: register it first with @pool.task({task_name!r}) "
                f"or pool.add_task({task_name!r}, handler) (registered tasks: {known})",
                "task", f"schedule {name or task_name!r}",
            )
        cron, every = _rule(rule, cron, every, f"schedule {name or task_name!r}")
        schedule = build_schedule(
            definition, cron=cron, every=every, context=context, name=name, timezone=timezone,
            repeat=repeat, priority=priority, queue_name=queue_name, start=start, enabled=enabled,
            description=description, misfire_grace=misfire_grace, metadata=metadata,
        )
        if name is not None:
            return self.scheduler.add(schedule)
        existing = self.scheduler.schedules.get(schedule.name)
        if existing is not None and existing.identity != schedule.identity:
            schedule.name = f"{task_name}@{schedule.identity}"
        return self.scheduler.add(schedule, replace=True)

    def schedule(
        self,
        task_name: str,
        rule: str | int | float | timedelta | None = None,
        context: BaseModel | Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: str | int | float | timedelta | None = None,
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
        **task_options: Any,
    ) -> Callable[[F], F]:
        """``@pool.schedule("cleanup", every="1 hour")`` or ``@pool.schedule("report",
        "0 9 * * *")``: register the handler as task ``task_name`` (like ``@pool.task``, which
        gets ``task_options``) and schedule it (like :meth:`add_schedule`)."""

        def decorator(handler: F) -> F:
            registered: F = cast(_Registrar, self).task(task_name, **task_options)(handler)
            self.add_schedule(
                task_name, rule, context, cron=cron, every=every, name=name, timezone=timezone,
                repeat=repeat, priority=priority, queue_name=queue_name, start=start,
                enabled=enabled, description=description, misfire_grace=misfire_grace,
                metadata=metadata,
            )
            return registered

        return decorator

    def load_schedules(self, path: str | PathLike[str]) -> list[Schedule]:
        """Add the schedules of a YAML file (see :func:`agentexec.schedule.load_schedules`)."""
        from agentexec.schedule.file import load_schedules

        return load_schedules(path, self)
