"""``ax.Pipeline``: a class of ordered steps, run inline or as one task on a worker's pipeline lane."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from uuid import UUID

from pydantic import BaseModel

from agentexec.activity.metadata import validate_metadata
from agentexec.activity.status import Status
from agentexec.backends import as_uuid as _uuid
from agentexec.config import CONF
from agentexec.faults import error_message
from agentexec.lifecycle import lines_written
from agentexec.pipeline._engine import PipelineStepError, run_steps
from agentexec.pipeline._steps import (
    PipelineDefinitionError,
    StepDefinition,
    collect,
    is_model_type,
    mark,
)
from agentexec.queueing import submit
from agentexec.task import Priority, Task, TaskDefinition

if TYPE_CHECKING:
    from agentexec.worker.pool import Pool

F = TypeVar("F", bound=Callable[..., Any])

#: the pool lane pipelines run in: its own queue and slots, so a pipeline waiting on its
#: children never holds a slot the children need
LANE = "pipelines"
#: ``Envelope.kind`` of a queued pipeline run
KIND = "pipeline"

_MISSING: Any = object()


class PipelineBase:
    """What ``pipeline.Base`` extends. Subclassing a pipeline's ``Base`` defines its steps."""

    _pipeline: ClassVar[Pipeline]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_pipeline" not in cls.__dict__:  # a user's class, not the bound ``Base`` itself
            cls._pipeline._bind(cls)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Pipeline:
    """Ordered steps that pass values along; run inline or enqueued onto a worker.

    ::

        pipeline = ax.Pipeline(pool)

        class Research(pipeline.Base):
            @pipeline.step(0, description="Research")
            async def research(self, ctx: Input) -> tuple[dict, dict]:
                a = await ax.enqueue("process_a", ctx)
                b = await ax.enqueue("process_b", ctx)
                return await ax.gather(a, b)

            @pipeline.step(1)
            async def combine(self, a: dict, b: dict) -> dict:
                ...

        task = await pipeline.enqueue(context=Input(...))   # on a worker, tracked
        value = await pipeline.run(None, Input(...))        # inline

    The first step receives the context; each next step receives the previous step's value, a
    tuple unpacked into positional arguments and anything else as one argument.
    """

    def __init__(self, pool: Pool | None = None, *, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"Pipeline(name=...) must be a non-empty str, got {name!r}")
        self.pool = pool
        self._name = name
        self._cls: type[PipelineBase] | None = None
        self._steps: list[StepDefinition] = []
        self._definition: TaskDefinition | None = None
        #: the class a pipeline's steps are defined on: ``class MyPipeline(pipeline.Base)``
        self.Base: type[PipelineBase] = type(
            "Base", (PipelineBase,), {"_pipeline": self, "__qualname__": "Pipeline.Base"}
        )

    def __repr__(self) -> str:
        bound = self._cls.__qualname__ if self._cls else "no class yet"
        return f"<Pipeline {self._name or bound!r} steps={[s.name for s in self._steps]}>"

    # -- definition ---------------------------------------------------------------------------
    def step(self, order: int | str, description: str | None = None) -> Callable[[F], F]:
        """Mark a method of a ``pipeline.Base`` subclass as a step; steps run in ``sorted(order)``."""

        def decorator(func: F) -> F:
            mark(self, order, description, func)
            return func

        return decorator

    def _bind(self, cls: type[PipelineBase]) -> None:
        if self._cls is not None:
            raise PipelineDefinitionError(
                f"{cls.__qualname__} extends the Base of a pipeline already defined by "
                f"{self._cls.__qualname__}: create one ax.Pipeline(pool) per pipeline class"
            )
        steps = collect(cls, self)
        try:
            inspect.signature(cls).bind()
        except (TypeError, ValueError) as exc:
            raise PipelineDefinitionError(
                f"pipeline class {cls.__qualname__} must be constructible without arguments "
                f"(agentexec creates one instance per run): {exc}"
            ) from None
        self._cls, self._steps = cls, steps
        first = steps[0]
        annotation = first.param_types.get(first.arity.names[0]) if first.arity.names else None
        if is_model_type(annotation):
            self._definition = TaskDefinition(self.name, self._handle, annotation)
            if self.pool is not None:
                self.pool._register(self._definition, lane=LANE)

    @property
    def name(self) -> str:
        """The task name pipeline runs are queued and tracked under (default: the class name in
        snake_case)."""
        if self._name:
            return self._name
        if self._cls is None:
            raise RuntimeError("define the pipeline first: class MyPipeline(pipeline.Base): ...")
        return _snake(self._cls.__name__)

    @property
    def steps(self) -> list[StepDefinition]:
        """The steps in run order."""
        return list(self._steps)

    @property
    def context_class(self) -> type[BaseModel] | None:
        """The pydantic model the first step's context is annotated with (needed to enqueue)."""
        return self._definition.context_class if self._definition else None

    def _require_class(self) -> type[PipelineBase]:
        if self._cls is None:
            raise RuntimeError(
                "this pipeline has no steps yet: define `class MyPipeline(pipeline.Base)` with "
                "methods decorated @pipeline.step(order)"
            )
        return self._cls

    # -- running ------------------------------------------------------------------------------
    async def run(self, agent_id: UUID | str | None = None, context: Any = _MISSING) -> Any:
        """Run every step here, now, and return the last step's value.

        With an ``agent_id`` the run is tracked in that activity (created if absent): a log line
        per step, then COMPLETE, or ERROR naming the step that failed. With ``None`` nothing is
        recorded. A failing step's own exception is raised. Inline runs are not checkpointed:
        nothing redelivers them (``enqueue`` is the way to get resume after a crash).
        """
        if context is _MISSING:
            if agent_id is None or isinstance(agent_id, UUID | str):
                raise TypeError("Pipeline.run(agent_id, context): the context is missing")
            agent_id, context = None, agent_id  # run(ctx): a context alone
        cls = self._require_class()
        if agent_id is None:
            try:
                return await run_steps(self.name, self._steps, cls(), context)
            except PipelineStepError as exc:
                raise _original(exc) from None
        return await self._run_tracked(cls, _uuid(agent_id), context)

    async def _run_tracked(self, cls: type[PipelineBase], agent_id: UUID, context: Any) -> Any:
        from agentexec import activity

        if await activity.adetail(agent_id) is None:
            await activity.acreate(self.name, CONF.activity_message_create, agent_id)
        await activity.aupdate(agent_id, CONF.activity_message_started, status=Status.RUNNING)

        async def progress(message: str, percentage: int) -> None:
            await activity.aupdate(agent_id, message, percentage, Status.RUNNING)

        try:
            value = await run_steps(self.name, self._steps, cls(), context, progress=progress)
        except PipelineStepError as exc:
            await activity.aerror(agent_id, error_message(str(exc)))
            raise _original(exc) from None
        except BaseException as exc:
            await activity.aerror(agent_id, error_message(str(exc)))
            raise
        await activity.acomplete(agent_id, CONF.activity_message_complete)
        return value

    async def _handle(self, agent_id: UUID, context: BaseModel) -> Any:
        """The task a worker runs for an enqueued pipeline (its lifecycle sets RUNNING, stores
        the value, sets COMPLETE or ERROR)."""
        from agentexec.runtime import get_backends

        backends = get_backends()

        async def progress(message: str, percentage: int) -> None:
            await lines_written(agent_id)  # after the pipeline's own RUNNING line
            await backends.activity.aappend(agent_id, message, Status.RUNNING, percentage)

        return await run_steps(
            self.name,
            self._steps,
            self._require_class()(),
            context,
            progress=progress,
            agent_id=agent_id,
            checkpoints=backends.results,
            resume=True,
        )

    async def enqueue(
        self,
        context: BaseModel,
        priority: Priority = Priority.LOW,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Task:
        """Queue a run on the pool's pipeline lane; its activity is QUEUED when this returns
        (with ``metadata``, as ``ax.enqueue`` stores it).

        The value of the last step is what ``ax.get_result(task)`` returns; a failing step makes
        it raise :class:`agentexec.TaskFailedError` naming the step.
        """
        self._require_class()
        if self._definition is None:
            first = self._steps[0]
            raise TypeError(
                f"pipeline {self.name!r} cannot be enqueued: annotate the first step's context "
                f"with a pydantic model, `async def {first.name}(self, ctx: MyContext)`, so a "
                f"worker can rebuild the context from JSON"
            )
        if self.pool is None:
            raise RuntimeError(
                f"pipeline {self.name!r} has no pool: create it with ax.Pipeline(pool) so workers "
                f"know how to run it"
            )
        if not isinstance(priority, Priority):
            raise TypeError(f"priority must be ax.Priority.HIGH or ax.Priority.LOW, got {priority!r}")
        metadata = validate_metadata(metadata)
        task = Task.create(self.name, self._definition.validate_context(context))
        task.priority = priority
        task.queue_name = self.pool.lane_queue_name(LANE)
        task.metadata = metadata
        # the pool's own stores: the ones its workers take this pipeline from
        await submit([task], self.pool.backends, kind=KIND)
        return task


def _original(exc: PipelineStepError) -> BaseException:
    """The failing step's own exception, noting where it happened."""
    exc.error.add_note(f"in pipeline {exc.pipeline!r}, step {exc.step!r} ({exc.index + 1}/{exc.total})")
    return exc.error
