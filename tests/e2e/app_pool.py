"""The pool the end-to-end tests run as a real program (``python app_pool.py`` or
``agentexec run app_pool:pool``), configured through environment variables:
``AGENTEXEC_*`` for agentexec itself, ``E2E_QUEUE`` and ``E2E_JOURNAL`` for the test."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time
from uuid import UUID

import agentexec as ax
import anyio
from pydantic import BaseModel
from sqlalchemy import create_engine

# a stuck test dumps every thread of the pool and its workers (inherited through fork)
faulthandler.register(signal.SIGUSR2, all_threads=True)

DATABASE_URL = os.environ["AGENTEXEC_DATABASE_URL"]
JOURNAL = os.environ["E2E_JOURNAL"]

engine = create_engine(DATABASE_URL)
ax.Base.metadata.create_all(engine)

pool = ax.Pool(engine=engine, database_url=DATABASE_URL, queue_name=os.environ["E2E_QUEUE"])

if "E2E_SERVER_TIMEOUT" in os.environ:  # how long a stuck fork server has, in seconds
    import agentexec.worker.process_supervisor

    agentexec.worker.process_supervisor.SERVER_TIMEOUT = float(os.environ["E2E_SERVER_TIMEOUT"])


class Job(BaseModel):
    label: str = ""
    seconds: float = 0.0
    fail: bool = False
    #: raise a BaseException that is not an Exception: "system_exit", "keyboard_interrupt", "base"
    exit: str = ""
    #: poison data (issue 14): "surrogate_result" returns half an emoji, "surrogate_error" and
    #: "nul_error" raise an error whose text holds one, or a NUL byte
    poison: str = ""
    #: flaky_job fails this many runs (ConnectionError), then succeeds
    fails: int = 0
    #: locked_job: tasks of one user never run at once (lock_key)
    user: str = ""


class Bye(BaseException):
    pass


def leave(how: str) -> None:
    if how == "system_exit":
        sys.exit(3)
    if how == "keyboard_interrupt":
        raise KeyboardInterrupt
    if how == "base":
        raise Bye("so long")


def note(event: str, agent_id: UUID, label: str) -> None:
    line = json.dumps({
        "event": event, "agent_id": str(agent_id), "label": label, "pid": os.getpid(),
        "queue": pool.queue_name, "t": time.time(),
    })
    with open(JOURNAL, "a") as f:  # one short O_APPEND write per line: lines never interleave
        f.write(line + "\n")


@pool.task("job")
async def job(agent_id: UUID, context: Job) -> str:
    note("start", agent_id, context.label)
    if context.seconds:
        await anyio.sleep(context.seconds)
    if context.fail:
        raise ValueError(f"boom {context.label}")
    if context.exit:
        leave(context.exit)
    if context.poison:
        return poisoned(agent_id, context)
    note("end", agent_id, context.label)
    return context.label


#: half of an emoji, as an LLM's output cut mid-character decodes: no encoder accepts it
HALF_EMOJI = json.loads('"\\ud83d"')


def poisoned(agent_id: UUID, context: Job) -> str:
    note("end", agent_id, context.label)
    if context.poison == "surrogate_result":
        return f"{context.label} {HALF_EMOJI}"
    if context.poison == "surrogate_error":
        raise ValueError(f"half {HALF_EMOJI} an emoji")
    if context.poison == "nul_error":
        raise ValueError("a NUL\x00byte")
    raise AssertionError(context.poison)


@pool.task("event_loop")
async def event_loop(agent_id: UUID, context: Job) -> str:
    """The class of the event loop its worker runs it on (``CONF.worker_event_loop``)."""
    import asyncio

    loop = type(asyncio.get_running_loop())
    return f"{loop.__module__}.{loop.__qualname__}"


@pool.task("sync_job")
def sync_job(agent_id: UUID, context: Job) -> str:
    """A sync handler: it runs in a thread of its worker."""
    note("start", agent_id, context.label)
    if context.seconds:
        time.sleep(context.seconds)
    if context.exit:
        leave(context.exit)
    note("end", agent_id, context.label)
    return context.label


@pool.task("locked_job", lock_key="user:{user}")
async def locked_job(agent_id: UUID, context: Job) -> str:
    note("start", agent_id, context.label)
    await anyio.sleep(context.seconds)
    note("end", agent_id, context.label)
    return context.label


@pool.task("timed_job", timeout=1)
async def timed_job(agent_id: UUID, context: Job) -> str:
    note("start", agent_id, context.label)
    await anyio.sleep(context.seconds)
    note("end", agent_id, context.label)
    return context.label


def runs_so_far(agent_id: UUID) -> int:
    with open(JOURNAL) as f:
        return sum(1 for line in f if f'"agent_id": "{agent_id}"' in line and '"event": "start"' in line)


@pool.task("flaky_job", retries=3, backoff=0.2)
async def flaky_job(agent_id: UUID, context: Job) -> str:
    note("start", agent_id, context.label)
    runs = runs_so_far(agent_id)
    if runs <= context.fails:
        raise ConnectionError(f"flaky run {runs}")
    return context.label


@pool.task("flaky_once", retries=1, backoff=0.2)
async def flaky_once(agent_id: UUID, context: Job) -> str:
    note("start", agent_id, context.label)
    raise ConnectionError(f"flaky run {runs_so_far(agent_id)}")


@pool.task("agent_job")
async def agent_job(agent_id: UUID, context: Job) -> str:
    """An OpenAI Agents SDK ``Runner.run`` (through ``ax.OpenAIRunner``) on a scripted model
    whose second turn takes ``context.seconds``: a cancel lands inside the SDK's run. Run the
    pool with ``E2E_OPENAI=1`` (the SDK is imported before the workers fork: importing it in a
    worker blocks its loop for longer than the tests' 2 s lease)."""
    import asyncio

    from agentexec_openai.testing import ScriptedModel, answer, scripted_run_config, tool_call
    from agents import Agent

    class SlowModel(ScriptedModel):
        async def get_response(self, *args: object, **kwargs: object) -> object:
            if self.calls:
                note("model_wait", agent_id, context.label)
                try:
                    await anyio.sleep(context.seconds)
                except asyncio.CancelledError:
                    note("model_cancelled", agent_id, context.label)
                    raise
            return await super().get_response(*args, **kwargs)  # type: ignore[arg-type]

    note("start", agent_id, context.label)
    model = SlowModel([[tool_call("report_activity", message="Thinking", percentage=10)], [answer("done")]])
    runner = ax.OpenAIRunner(agent_id, run_config=scripted_run_config(model))
    agent = Agent(name="Slow", instructions=runner.prompts.report_status, tools=[runner.tools.report_status], model="gpt-4.1")
    result = await runner.run(agent, "go", max_turns=3)
    note("end", agent_id, context.label)
    return str(result.final_output)


if os.environ.get("E2E_OPENAI"):
    os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    import agentexec_openai.testing  # noqa: F401
    import agents

    agents.set_tracing_disabled(True)

if __name__ == "__main__":
    pool.run()
