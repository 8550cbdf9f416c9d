"""The step loop: call each step with the previous value, report progress, checkpoint, resume."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import anyio.to_thread

from agentexec import telemetry
from agentexec.config import CONF
from agentexec.pipeline import _checkpoint
from agentexec.pipeline._steps import StepDefinition

Progress = Callable[[str, int], Awaitable[None]]


class PipelineStepError(Exception):
    """A step raised: the pipeline stopped there. ``__cause__`` is the step's own exception."""

    def __init__(self, pipeline: str, step: str, index: int, total: int, error: BaseException) -> None:
        self.pipeline = pipeline
        self.step = step
        self.index = index
        self.total = total
        self.error = error
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        super().__init__(f"pipeline {pipeline!r} stopped at step {step!r} ({index + 1}/{total}): {detail}")


def arguments(value: Any) -> tuple[Any, ...]:
    """A tuple is unpacked into positional arguments; anything else is one argument."""
    return value if isinstance(value, tuple) else (value,)


def shaped(step: StepDefinition, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Resumed arguments rebuilt to the step's annotated types (checkpoints hold JSON)."""
    names = [n for n in step.arity.names if not n.startswith("*")]
    star = next((n[1:] for n in step.arity.names if n.startswith("*")), None)
    out = []
    for i, arg in enumerate(args):
        name = names[i] if i < len(names) else star
        out.append(_checkpoint.coerce(arg, step.param_types.get(name or "", _checkpoint.UNSET)))
    return tuple(out)


async def call(step: StepDefinition, instance: object, args: tuple[Any, ...]) -> Any:
    if step.is_async:
        return await step.handler(instance, *args)
    # a sync step runs in a thread so it cannot stall the worker's heartbeats and other tasks
    return await anyio.to_thread.run_sync(functools.partial(step.handler, instance, *args))


async def run_steps(
    name: str,
    steps: Sequence[StepDefinition],
    instance: object,
    context: Any,
    *,
    progress: Progress | None = None,
    agent_id: UUID | None = None,
    checkpoints: Any = None,
    resume: bool = False,
) -> Any:
    """Run ``steps`` in order on ``instance`` and return the last step's value.

    ``progress(message, percentage)`` is awaited before each step. With ``checkpoints`` (a
    result backend) and ``agent_id``, each step's value is checkpointed; with ``resume`` as well,
    the run starts after the last checkpointed step. A step that raises ends the run with
    :class:`PipelineStepError`.
    """
    total = len(steps)
    value: Any = context
    start = 0
    resumed = False
    if resume and checkpoints is not None and agent_id is not None:
        found = await _checkpoint.latest(checkpoints, agent_id, [s.name for s in steps])
        if found is not None:
            value, start, resumed = found.value(), found.index + 1, True
            if progress is not None:
                await progress(
                    f"Resuming after step {start}/{total} ({steps[found.index].label}): "
                    f"earlier steps are not repeated",
                    start * 100 // total,
                )
    for index in range(start, total):
        step = steps[index]
        if progress is not None:
            await progress(f"Step {index + 1}/{total}: {step.label}", index * 100 // total)
        args = arguments(value)
        if resumed and index == start:
            args = shaped(step, args)
        saving = checkpoints is not None and agent_id is not None
        try:
            if telemetry.on():
                with telemetry.span(f"step {step.label}", telemetry.INTERNAL, {
                    "agentexec.pipeline": name, "agentexec.step": step.name,
                    "agentexec.step.index": index + 1, "agentexec.step.total": total,
                }):
                    value = await call(step, instance, args)
            else:
                value = await call(step, instance, args)
            payload = _checkpoint.encode(index, step.name, value) if saving else b""
        except Exception as exc:
            raise PipelineStepError(name, step.name, index, total, exc) from exc
        if saving:
            assert agent_id is not None
            await checkpoints.set(_checkpoint.checkpoint_id(agent_id, index), payload, CONF.result_ttl)
    return value
