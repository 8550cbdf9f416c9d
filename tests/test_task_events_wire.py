"""The wire format of task events as docs/schedules-and-events.md shows it: its example message
("agentexec.task-events/1") decodes into the event the page says, and a worker's messages have
that shape."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from agentexec import task_events
from agentexec.activity.status import Status
from agentexec.backends import Event
from agentexec.events import decode_all

PAGE = Path(__file__).resolve().parents[1] / "docs" / "schedules-and-events.md"


def _example() -> str:
    section = PAGE.read_text().split("### Wire format of task events", 1)[1]
    match = re.search(r"```json\n(.*?)```", section, re.S)
    assert match, "the wire format section has no json example"
    return match.group(1)


def test_the_documented_message_decodes_into_the_documented_event() -> None:
    data = _example()
    assert json.loads(data)["format"] == task_events.ROWS_FORMAT == "agentexec.task-events/1"
    [event] = decode_all(Event("events:task.failed", data, "7-0"))
    assert event.event_type == "task.failed" and event.source == "agentexec" and event.id == "7-0"
    assert event.payload == {
        "task_id": "0b7d3c1e-9f2a-4b6c-8d0e-1f2a3b4c5d6e", "agent_id": "0b7d3c1e-9f2a-4b6c-8d0e-1f2a3b4c5d6e",
        "task_name": "resize", "status": "ERROR", "metadata": {"user": "ann"}, "message": "ValueError: boom",
    }
    assert event.uuid == "3f9c0e57a1b2c3d4e5f6" + f"{41:012x}"
    assert event.time.isoformat() == "2026-12-07T13:40:00.123456+00:00"


def test_a_published_task_event_has_the_documented_shape() -> None:
    agent = uuid.uuid4()
    row = task_events.encode_task(agent, "resize", Status.ERROR, {"user": "ann"}, "ValueError: boom")
    [(channel, data)] = task_events._messages([("task.failed", row)])
    message = json.loads(data)
    assert channel == "events:task.failed"
    assert set(message) == {"format", "event_type", "source", "ids", "rows"}
    [[part, text, when, n]] = message["rows"]
    assert part == [agent.hex, "resize", {"user": "ann"}] and text == "ValueError: boom"
    assert isinstance(when, str) and isinstance(n, int) and len(message["ids"]) == 20


def test_a_malformed_message_of_rows_is_skipped_not_raised() -> None:
    good = json.loads(_example())
    broken = [
        {**good, "event_type": "task.unknown"},
        {k: v for k, v in good.items() if k != "rows"},
        {**good, "rows": [["not a part", None, "2026-12-07T13:40:00+00:00", 1]]},
        {**good, "rows": [[["zz", "resize", None], None, "2026-12-07T13:40:00+00:00", 1]]},
        {**good, "rows": 5},
    ]
    for data in broken:
        assert decode_all(Event("events:task.failed", json.dumps(data), "8-0")) == [], data
