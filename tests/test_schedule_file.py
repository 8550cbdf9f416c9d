"""Schedule files in the spec's YAML shape: they load, and every bad entry is named precisely."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from agentexec.schedule import ScheduleFileError, SchedulingMixin, load_schedules
from agentexec.task import Priority, TaskDefinition
from pydantic import BaseModel


class EmailBatch(BaseModel):
    batch_size: int = 10


class ReportContext(BaseModel):
    recipients: list[str]
    title: str = "Daily report"


async def process_emails(agent_id: UUID, context: EmailBatch) -> dict[str, int]:
    return {"processed": context.batch_size}


async def daily_report(agent_id: UUID, context: ReportContext) -> None:
    return None


class FakePool(SchedulingMixin):
    def __init__(self) -> None:
        self.queue_name = "q"
        self.tasks: dict[str, TaskDefinition] = {}

    def task(self, name: str) -> Callable[[Any], Any]:
        def register(handler: Any) -> Any:
            self.tasks[name] = TaskDefinition(name, handler)
            return handler

        return register


@pytest.fixture
def pool() -> FakePool:
    pool = FakePool()
    pool.task("process_emails")(process_emails)
    pool.task("daily_report")(daily_report)
    return pool


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.yaml"
    path.write_text(textwrap.dedent(text))
    return path


SPEC_SHAPE = """\
tasks:
  - name: process_pending_emails
    description: Process pending emails every 5 minutes
    enabled: true
    type: interval
    schedule: "5 minutes"
    task: process_emails
    kwargs:
      batch_size: 10

  - name: daily_report
    description: Generate daily report at 9 AM
    enabled: true
    type: cron
    schedule: "0 9 * * *"
    context:
      recipients: [ops@example.com]
    timezone: Europe/Paris
    repeat: 5
    priority: high

  - name: weekly_digest
    enabled: false
    schedule: "1 week"
    task: process_emails
"""


def test_the_spec_shape_loads(tmp_path: Path, pool: FakePool) -> None:
    loaded = load_schedules(write(tmp_path, SPEC_SHAPE), pool)
    assert [s.name for s in loaded] == ["process_pending_emails", "daily_report", "weekly_digest"]
    emails, report, digest = loaded
    assert emails.task_name == "process_emails" and emails.context == EmailBatch(batch_size=10)
    assert emails.timing.describe() == "every 5 minutes"
    assert emails.description == "Process pending emails every 5 minutes" and emails.enabled
    assert report.task_name == "daily_report"  # `task:` defaults to the entry's name
    assert report.context == ReportContext(recipients=["ops@example.com"])
    assert report.timing.describe() == "cron 0 9 * * *" and report.timezone == "Europe/Paris"
    assert report.repeat == 5 and report.firings == 6 and report.priority is Priority.HIGH
    assert digest.timing.describe() == "every 1 week" and not digest.enabled  # type inferred
    assert set(pool.schedules) == {s.name for s in loaded}
    assert emails.source is not None and emails.source.endswith("schedules.yaml:2: entry tasks[0] 'process_pending_emails'")


def test_pool_method_loads_too(tmp_path: Path, pool: FakePool) -> None:
    assert len(pool.load_schedules(write(tmp_path, SPEC_SHAPE))) == 3


def problems_of(tmp_path: Path, pool: FakePool, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ScheduleFileError) as info:
        load_schedules(path, pool)
    assert str(path) in str(info.value)
    assert pool.schedules == {}  # all or nothing
    return info.value.problems


def test_bad_cron_string_names_file_line_entry_and_field(tmp_path: Path, pool: FakePool) -> None:
    [problem] = problems_of(tmp_path, pool, """\
        tasks:
          - name: daily_report
            type: cron
            schedule: "0 25 * * *"
            context: {recipients: [a@b.c]}
        """)
    assert problem.startswith(f"{tmp_path / 'schedules.yaml'}:4: entry tasks[0] 'daily_report', field 'schedule': ")
    assert "invalid cron expression '0 25 * * *'" in problem


def test_unknown_task_is_named_with_the_registered_ones(tmp_path: Path, pool: FakePool) -> None:
    [problem] = problems_of(tmp_path, pool, """\
        tasks:
          - name: nightly
            schedule: "0 2 * * *"
            task: send_newsletter
        """)
    assert ":4: entry tasks[0] 'nightly', field 'task': unknown task 'send_newsletter'" in problem
    assert "registered tasks: daily_report, process_emails" in problem


def test_context_failing_validation_names_the_model_and_the_field(tmp_path: Path, pool: FakePool) -> None:
    [problem] = problems_of(tmp_path, pool, """\
        tasks:
          - name: emails
            type: interval
            schedule: 5 minutes
            task: process_emails
            kwargs:
              batch_size: lots
        """)
    assert ":6: entry tasks[0] 'emails', field 'kwargs': context does not validate against EmailBatch" in problem
    assert "batch_size: Input should be a valid integer" in problem and "(got 'lots')" in problem


def test_missing_required_context_field(tmp_path: Path, pool: FakePool) -> None:
    [problem] = problems_of(tmp_path, pool, """\
        tasks:
          - name: daily_report
            schedule: "0 9 * * *"
        """)
    assert "field 'context'" in problem and "recipients: Field required" in problem


def test_every_bad_entry_is_reported_at_once(tmp_path: Path, pool: FakePool) -> None:
    problems = problems_of(tmp_path, pool, """\
        tasks:
          - name: ok
            schedule: 1 minute
            task: process_emails
          - name: wrong_type
            type: sometimes
            schedule: 1 minute
            task: process_emails
          - name: bad_interval
            type: interval
            schedule: 5 fortnights
            task: process_emails
          - name: spec_function
            schedule: 1 minute
            function: "app.services.email_service:process_pending_emails_task"
          - name: typo
            schedule: 1 minute
            task: process_emails
            enabld: false
          - schedule: 1 minute
          - name: ok
            schedule: 2 minutes
            task: process_emails
          - name: tz
            schedule: 0 9 * * *
            task: process_emails
            timezone: Moon/Base
          - just a string
        """)
    assert len(problems) == 8, problems
    wrong_type, bad_interval, function, typo, nameless, duplicate, tz, string = problems
    assert "tasks[1] 'wrong_type', field 'type': must be 'cron' or 'interval', got 'sometimes'" in wrong_type
    assert "field 'schedule': invalid interval '5 fortnights'" in bad_interval
    assert "field 'function': field 'function' is not supported" in function and "task:" in function
    assert "field 'enabld': unknown field 'enabld'" in typo
    assert "tasks[5], field 'name': required" in nameless
    assert "tasks[6] 'ok', field 'name': duplicate schedule name 'ok' (also tasks[0] 'ok')" in duplicate
    assert "field 'timezone': unknown timezone 'Moon/Base'" in tz
    assert "tasks[8]: expected a mapping" in string


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tasks: [\n  {name: x\n", "not valid YAML"),
        ("- name: x\n", "expected a mapping with a `tasks:` list"),
        ("", "expected a mapping with a `tasks:` list"),
    ],
)
def test_malformed_files(tmp_path: Path, pool: FakePool, text: str, fragment: str) -> None:
    [problem] = problems_of(tmp_path, pool, text)
    assert fragment in problem


def test_missing_file(tmp_path: Path, pool: FakePool) -> None:
    with pytest.raises(ScheduleFileError, match="cannot read the file"):
        load_schedules(tmp_path / "nope.yaml", pool)


def test_names_already_in_the_pool_clash(tmp_path: Path, pool: FakePool) -> None:
    pool.add_schedule("process_emails", every="1 minute", name="process_pending_emails")
    with pytest.raises(ScheduleFileError, match="'process_pending_emails' already exists in the pool"):
        load_schedules(write(tmp_path, SPEC_SHAPE), pool)
    assert list(pool.schedules) == ["process_pending_emails"]
