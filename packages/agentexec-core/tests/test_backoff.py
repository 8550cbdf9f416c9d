"""The one backoff helper every retry loop uses."""

from __future__ import annotations

import pytest

from agentexec.backoff import Backoff, retry_delay
from agentexec.task import TaskDefinition


def test_waits_double_up_to_the_most_and_reset_starts_over() -> None:
    wait = Backoff(0.05, 0.3)
    assert [wait.next() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    assert wait.backing_off
    wait.reset()
    assert not wait.backing_off and wait.next() == 0.05


def test_nonsense_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="first <= most"):
        Backoff(1.0, 0.5)
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)


@pytest.mark.anyio
async def test_sleep_honours_a_limit() -> None:
    wait = Backoff(1.0, 4.0)
    assert await wait.sleep(limit=0.0) == 0.0
    assert wait.delay == 2.0  # the limit cut this wait, not the ones after it


def _definition(backoff: object) -> TaskDefinition:
    async def handler(agent_id: object, context: object) -> None: ...

    definition = TaskDefinition.__new__(TaskDefinition)
    object.__setattr__(definition, "backoff", backoff)
    return definition


def test_task_retry_waits_grow_with_jitter_within_half_and_all() -> None:
    definition = _definition(1.0)
    for attempt in (1, 2, 3, 4):
        full = 2.0 ** (attempt - 1)
        assert all(full / 2 <= retry_delay(definition, attempt) <= full for _ in range(50))
    assert retry_delay(_definition(lambda n: n * 10), 3) == 30.0
