"""``ax.cancel`` against a real pool on every stack: a running async handler and a running
OpenAI Agents SDK ``Runner.run`` (scripted model) end CANCELED with the reason, cancelled from
this process and from the ``agentexec cancel`` command; a queued task never starts; a finished
one is left alone."""

from __future__ import annotations

import functools
from collections.abc import Callable
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.activity.status import Status
from agentexec.runtime import Backends
from e2e_support import WAIT, PoolProcess, Stack, agentexec_cli, python_app, wait_until
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RunPool = Callable[..., PoolProcess]


class Job(BaseModel):
    label: str = ""
    seconds: float = 0.0


def status_of(agent_id: UUID) -> Status | None:
    detail = ax.activity.detail(agent_id)
    return None if detail is None else detail.status


async def canceled_within(agent_id: UUID) -> float:
    """Seconds from the cancel request's line to the CANCELED line, as the store dated them
    (waiting at most WAIT for the CANCELED line)."""
    wait_until(lambda: status_of(agent_id) is Status.CANCELED, WAIT, f"{agent_id} CANCELED")
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    requested = next(log for log in detail.logs if log.message.startswith("Cancel requested: "))
    return (detail.logs[-1].created_at - requested.created_at).total_seconds()


async def test_cancel_running_queued_and_finished_tasks(
    stack: Stack, producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    # one worker, two slots: the async job and the agent run take both, the third waits
    pool = run_pool(python_app(), AGENTEXEC_WORKER_CONCURRENCY="2", E2E_OPENAI="1")
    slow = await ax.enqueue("job", Job(label="slow", seconds=60), queue_name=queue_name)
    agent = await ax.enqueue("agent_job", Job(label="agent", seconds=60), queue_name=queue_name)
    pool.wait_event("start", 2)
    pool.wait_event("model_wait", 1)  # the agent's run is inside the SDK, awaiting the model
    waiting = await ax.enqueue("job", Job(label="waiting"), queue_name=queue_name)

    # queued: taken out of the queue, never starts
    result = await ax.cancel(waiting.agent_id, reason="not needed", queue_name=queue_name)
    assert result.state == "cancelled" and result
    assert status_of(waiting.agent_id) is Status.CANCELED
    with pytest.raises(ax.TaskCancelledError, match="not needed") as info:
        await ax.get_result(waiting, timeout=5)
    assert isinstance(info.value, ax.TaskFailedError) and info.value.reason == "not needed"

    # running async handler, from this process
    result = await ax.cancel(slow.agent_id, reason="user pressed stop", queue_name=queue_name)
    assert result.state == "requested"
    slow_took = await canceled_within(slow.agent_id)
    with pytest.raises(ax.TaskCancelledError, match="user pressed stop"):
        await ax.get_result(slow, timeout=5)

    # the agent run: with the CLI (one stack: a command costs seconds on a loaded machine), or
    # the sync twin
    if stack.name == "sqlite":
        with anyio.fail_after(WAIT):
            cli = await anyio.run_process(
                agentexec_cli("cancel", str(agent.agent_id), "--reason", "too slow", "--queue", queue_name),
                env=_cli_env(stack), check=False,
            )
        out = cli.stdout.decode() + cli.stderr.decode()
        assert cli.returncode == 0, out
        assert "asked to cancel" in out
    else:
        result = await anyio.to_thread.run_sync(
            functools.partial(ax.cancel_sync, agent.agent_id, reason="too slow", queue_name=queue_name)
        )
        assert result.state == "requested"
    agent_took = await canceled_within(agent.agent_id)
    with pytest.raises(ax.TaskCancelledError, match="too slow"):
        await ax.get_result(agent, timeout=5)
    pool.wait_event("model_cancelled", 1)  # the cancellation reached into Runner.run

    detail = ax.activity.detail(slow.agent_id)
    assert detail is not None
    assert [log.status for log in detail.logs][-1] is Status.CANCELED
    assert detail.logs[-1].message == "Task cancelled: user pressed stop"
    assert any(log.message == "Cancel requested: user pressed stop" for log in detail.logs)

    # the slots are free at once: a new task runs and completes
    after = await ax.enqueue("job", Job(label="after"), queue_name=queue_name)
    assert await ax.get_result(after, timeout=WAIT) == "after"

    # finished: a no-op that says so
    result = await ax.cancel(after.agent_id, reason="late")
    assert result.state == "finished" and not result
    assert "already ended COMPLETE" in result.message
    assert status_of(after.agent_id) is Status.COMPLETE

    labels = [e["label"] for e in pool.events() if e["event"] == "start"]
    assert "waiting" not in labels
    assert not [e for e in pool.events() if e["event"] == "end" and e["label"] in ("slow", "agent")]
    print(f"\n[{stack.name}] cancel → CANCELED: async {slow_took:.3f} s, agent {agent_took:.3f} s")
    assert pool.stop() == 0


def _cli_env(stack: Stack) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    return env | stack.env()
