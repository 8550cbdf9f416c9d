"""Which event stream a channel goes to, and which streams a subscription reads."""

from __future__ import annotations

import pytest

from agentexec.limits import stream_of, streams_for


@pytest.mark.parametrize(("channel", "stream"), [
    ("logs:default", "logs"),
    ("control:cancel", "control"),
    ("control:default", "control"),
    ("control:schedules:default", "control"),
    ("events:task.completed", "events"),
    ("my-app", "events"),
    ("controls", "events"),
])
def test_stream_of(channel: str, stream: str) -> None:
    assert stream_of(channel) == stream


@pytest.mark.parametrize(("patterns", "streams"), [
    (["control:cancel"], {"control"}),  # a worker's cancel listener: not the lifecycle events
    (["control:cancel", "control:default"], {"control"}),
    (["control:*"], {"control"}),
    (["events:*"], {"events"}),
    (["logs:*"], {"logs"}),
    (["*"], {"events", "logs", "control"}),
    (["c*"], {"events", "control"}),
    (["con?rol:x"], {"events", "control"}),
    (["l*"], {"events", "logs"}),
    (["e*", "control:cancel"], {"events", "control"}),
])
def test_streams_for(patterns: list[str], streams: set[str]) -> None:
    assert streams_for(patterns) == streams
