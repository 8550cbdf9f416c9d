"""Schedules from a YAML file (``agentexec run module:pool --schedules schedules.yaml``).

The shape is the scheduler spec's ``tasks:`` list; the entry names the agentexec task to run
(``task:``, default: the entry's ``name``) and its context (``context:`` or the spec's ``kwargs:``),
which is validated against the task's context model::

    tasks:
      - name: process_pending_emails
        description: Process pending emails every 5 minutes
        enabled: true
        type: interval            # or cron; inferred from `schedule` when absent
        schedule: "5 minutes"
        task: process_emails
        kwargs:
          batch_size: 10
      - name: daily_report
        type: cron
        schedule: "0 9 * * *"
        timezone: Europe/Paris    # optional: CONF.timezone by default
        repeat: 3                 # optional: 3 more firings after the first; forever by
                                  # default; 0 or "once": one firing
        metadata: {org: acme}     # optional: on each firing's activity
        priority: high            # optional
        task: generate_report

Every entry is checked before any is added; the error lists each bad entry with the file, line,
entry and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike, fspath
from typing import Any, Protocol

from agentexec.schedule.schedule import Schedule, ScheduleError, build_schedule
from agentexec.schedule.scheduler import Scheduler
from agentexec.schedule.timing import parse_interval
from agentexec.task import TaskDefinition

FIELDS = {
    "name", "description", "enabled", "type", "schedule", "task", "context", "kwargs", "timezone",
    "repeat", "priority", "queue_name", "start", "misfire_grace", "metadata",
}
_SPEC_ONLY = {
    "function": "agentexec runs registered tasks, not import paths: use `task: <name given to "
    "@pool.task(...)>`",
    "args": "task contexts are keyword-only: use `context:` (or `kwargs:`) with a mapping",
}


class SchedulePool(Protocol):
    """What :func:`load_schedules` needs from a pool."""

    tasks: dict[str, TaskDefinition]

    @property
    def scheduler(self) -> Scheduler: ...


class ScheduleFileError(ScheduleError):
    """The schedule file is invalid; ``problems`` lists one line per bad entry/field."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid schedule file {path} ({count}):\n  " + "\n  ".join(problems))


def load_schedules(path: str | PathLike[str], pool: SchedulePool) -> list[Schedule]:
    """Add the schedules of the YAML file ``path`` to ``pool`` and return them (the disabled ones
    too: they are listed but never fire). Nothing is added if any entry is invalid."""
    filename = fspath(path)
    try:
        with open(filename, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ScheduleFileError(filename, [f"cannot read the file: {exc.strerror or exc}"]) from None
    schedules = parse_schedules(text, pool.tasks, filename)
    taken = set(pool.scheduler.schedules)
    clashes = [s for s in schedules if s.name in taken]
    if clashes:
        raise ScheduleFileError(filename, [
            f"{s.source}: field 'name': a schedule named {s.name!r} already exists in the pool"
            for s in clashes
        ])
    for schedule in schedules:
        pool.scheduler.add(schedule)
    return schedules


def parse_schedules(
    text: str, tasks: Mapping[str, TaskDefinition], filename: str = "<string>"
) -> list[Schedule]:
    """The schedules a YAML document describes, checked against ``tasks``; raises
    :class:`ScheduleFileError` with every problem found."""
    import yaml  # imported by the first schedule file

    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark is not None else filename
        raise ScheduleFileError(filename, [f"{where}: not valid YAML: {exc}"]) from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise ScheduleFileError(filename, [
            f"{filename}: expected a mapping with a `tasks:` list of schedule entries at the top level"
        ])
    lines = _entry_lines(root)
    problems: list[str] = []
    schedules: list[Schedule] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(data["tasks"]):
        entry_lines = lines[index] if index < len(lines) else {}
        label = f"tasks[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label += f" {entry['name']!r}"

        def locate(field: str | None, _label: str = label, _lines: dict[str, int] = entry_lines) -> str:
            line = _lines.get(field or "", _lines.get("", 0))
            head = f"{filename}:{line}" if line else filename
            return f"{head}: entry {_label}" + (f", field {field!r}" if field else "")

        try:
            schedule = _entry(entry, tasks)
        except ScheduleError as exc:
            field = exc.field
            if field == "context" and isinstance(entry, dict) and "kwargs" in entry:
                field = "kwargs"
            problems.append(f"{locate(field)}: {exc.reason}")
            continue
        schedule.source = f"{filename}:{entry_lines.get('', 0)}: entry {label}"
        if schedule.name in seen:
            problems.append(
                f"{locate('name')}: duplicate schedule name {schedule.name!r} (also {seen[schedule.name]})"
            )
            continue
        seen[schedule.name] = label
        schedules.append(schedule)
    if problems:
        raise ScheduleFileError(filename, problems)
    return schedules


def _entry(entry: Any, tasks: Mapping[str, TaskDefinition]) -> Schedule:
    if not isinstance(entry, dict):
        raise ScheduleError(f"expected a mapping of schedule fields, got {type(entry).__name__}")
    for key in entry:
        if key in _SPEC_ONLY:
            raise ScheduleError(f"field {key!r} is not supported: {_SPEC_ONLY[key]}", str(key))
        if key not in FIELDS:
            raise ScheduleError(
                f"unknown field {key!r}; allowed fields: {', '.join(sorted(FIELDS))}", str(key)
            )
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ScheduleError("required: a non-empty string naming the schedule", "name")
    spec = entry.get("schedule")
    if not isinstance(spec, str | int) or isinstance(spec, bool) or spec == "":
        raise ScheduleError(
            "required: a cron expression ('0 9 * * *') or an interval ('5 minutes')", "schedule"
        )
    kind = entry.get("type", _infer_type(spec))
    if kind not in ("cron", "interval"):
        raise ScheduleError(f"must be 'cron' or 'interval', got {kind!r}", "type")
    task_name = entry.get("task", name)
    if not isinstance(task_name, str) or task_name not in tasks:
        known = ", ".join(sorted(tasks)) or "none"
        raise ScheduleError(
            f"unknown task {task_name!r}: register it with @pool.task({task_name!r}) before "
            f"loading the file (registered tasks: {known})",
            "task",
        )
    if "context" in entry and "kwargs" in entry:
        raise ScheduleError("give either `context:` or `kwargs:`, not both", "kwargs")
    context = entry.get("context", entry.get("kwargs"))
    if context is not None and not isinstance(context, dict):
        raise ScheduleError(f"must be a mapping of the task's context fields, got {context!r}", "context")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ScheduleError(f"must be true or false, got {enabled!r}", "enabled")
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise ScheduleError(f"must be a string, got {description!r}", "description")
    try:
        schedule = build_schedule(
            tasks[task_name],
            cron=str(spec) if kind == "cron" else None,
            every=spec if kind == "interval" else None,
            context=context,
            name=name,
            timezone=entry.get("timezone"),
            repeat=entry.get("repeat"),
            priority=entry.get("priority", "low"),
            queue_name=entry.get("queue_name"),
            start=entry.get("start"),  # YAML may already have made it a datetime
            enabled=enabled,
            description=description,
            misfire_grace=entry.get("misfire_grace", 60.0),
            metadata=entry.get("metadata"),
        )
    except ScheduleError as exc:
        field = "schedule" if exc.field in ("cron", "every") else exc.field
        raise ScheduleError(exc.reason, field) from None
    return schedule


def _infer_type(spec: Any) -> str:
    try:
        parse_interval(spec)
    except ValueError:
        return "cron"
    return "interval"


def _entry_lines(root: Any) -> list[dict[str, int]]:
    """For each entry of the top-level `tasks:` list: the 1-based line of the entry ('') and of each field."""
    import yaml

    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "tasks" and isinstance(value, yaml.SequenceNode):
            result: list[dict[str, int]] = []
            for item in value.value:
                lines = {"": item.start_mark.line + 1}
                if isinstance(item, yaml.MappingNode):
                    for k, _v in item.value:
                        lines[str(k.value)] = k.start_mark.line + 1
                result.append(lines)
            return result
    return []
