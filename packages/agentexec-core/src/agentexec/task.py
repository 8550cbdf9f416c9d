"""Tasks: what a handler is (``TaskDefinition``), one queued run of it (``Task``), and ``Priority``."""

from __future__ import annotations

import inspect
import math
import time
import typing
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import Enum
from typing import Any, Generic
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny
from typing_extensions import TypeVar

#: the longest task name: what every activity store keeps (``agent_type`` is a VARCHAR(255))
MAX_TASK_NAME = 255
#: the longest queue name: a lane's queue (``<queue>:pipelines``) must still fit in 255
MAX_QUEUE_NAME = 200
#: the largest ``attempts`` an envelope may carry (a SQL INTEGER; exact in Lua's numbers)
MAX_ATTEMPTS_FIELD = 2**31 - 1

EXPECTED_SIGNATURE = "async def handler(agent_id: UUID, context: MyContext) -> Any  # MyContext(BaseModel)"


def check_name(kind: str, name: str, limit: int) -> str:
    """``name`` if every backend can store it: at most ``limit`` characters, no control
    character (NUL, newline, escape …) and whole Unicode characters (no lone surrogate);
    otherwise a ``ValueError`` saying what is wrong, so that a bad name fails its own call at
    once instead of a write that other tasks share."""
    if len(name) > limit:
        raise ValueError(
            f"{kind} is {len(name)} characters long, more than the {limit} allowed: "
            f"{name[:40]!r}…"
        )
    if not name.isprintable():
        import unicodedata

        for position, char in enumerate(name):
            if unicodedata.category(char) in ("Cc", "Cs"):
                what = "a lone surrogate" if unicodedata.category(char) == "Cs" else "a control character"
                raise ValueError(
                    f"{kind} {name[:60]!r} holds {what} ({char!r} at position {position}); "
                    f"use printable text"
                )
    return name


class Priority(Enum):
    """Task priority: HIGH goes to the front of the queue, LOW (the default) to the back."""

    HIGH = "high"
    LOW = "low"


Handler = Callable[[UUID, Any], Awaitable[Any]] | Callable[[UUID, Any], Any]


class TaskDefinition:
    """A registered handler: its name, the callable, and the pydantic model its context must be."""

    __slots__ = (
        "backoff", "context_class", "handler", "is_async", "lock_key", "max_concurrency", "name",
        "result_type", "retries", "retry_on", "timeout",
    )

    def __init__(
        self,
        name: str,
        handler: Handler,
        context_class: type[BaseModel] | None = None,
        result_type: type[BaseModel] | None = None,
        *,
        timeout: float | timedelta | None = None,
        retries: int | None = None,
        backoff: float | timedelta | Callable[[int], float] | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        lock_key: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a task name must be a non-empty str, got {name!r}")
        if lock_key is not None and (not isinstance(lock_key, str) or not lock_key):
            raise TypeError(f"task {name!r}: lock_key must be a non-empty str template, got {lock_key!r}")
        #: ``"user:{user_id}"``: tasks whose context gives the same key never run at once
        self.lock_key = lock_key
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ValueError(f"task {name!r}: max_concurrency must be an int >= 1, got {max_concurrency!r}")
        #: at most this many runs of the task at once, across every pool on its queue
        self.max_concurrency = max_concurrency
        #: seconds the handler may run (``None``: ``CONF.task_timeout``)
        self.timeout = check_timeout(name, timeout)
        #: runs after the first that a failure may cost (``None``: ``CONF.task_retries``)
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            raise ValueError(f"task {name!r}: retries must be an int >= 0, got {retries!r}")
        self.retries = retries
        #: the first retry's wait in seconds (doubling each time), or ``attempt -> seconds``
        if backoff is not None and not callable(backoff):
            backoff = check_timeout(name, backoff, "backoff")
        self.backoff = backoff
        retry_on = retry_on if isinstance(retry_on, tuple) else (retry_on,)
        if not retry_on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
            raise TypeError(f"task {name!r}: retry_on must be an exception class or a tuple of them, got {retry_on!r}")
        self.retry_on = retry_on
        if context_class is not None and not (
            isinstance(context_class, type) and issubclass(context_class, BaseModel)
        ):
            raise TypeError(
                f"task {name!r}: the context type must be a pydantic BaseModel subclass, got "
                f"{context_class!r}"
            )
        if result_type is not None and not (
            isinstance(result_type, type) and issubclass(result_type, BaseModel)
        ):
            raise TypeError(
                f"task {name!r}: result_type must be a pydantic BaseModel subclass, got {result_type!r}"
            )
        self.name = check_name("the task name", name, MAX_TASK_NAME)
        self.handler = handler
        self.context_class = context_class or infer_context_class(name, handler)
        #: the model ``get_result`` rebuilds the handler's value as (the return annotation's,
        #: when it is one, unless given)
        self.result_type = result_type or infer_result_type(handler)
        self.is_async = inspect.iscoroutinefunction(handler)
        if lock_key is not None:
            check_lock_template(name, lock_key, self.context_class)

    @property
    def has_locks(self) -> bool:
        return self.lock_key is not None or self.max_concurrency is not None

    def locks_for(self, context: dict[str, Any]) -> dict[str, int] | None:
        """The locks a run with ``context`` (its JSON form) must hold: lock key -> holders
        allowed at once; ``None`` when the task has none. A template field the context lacks
        raises ``ValueError``."""
        if self.lock_key is None and self.max_concurrency is None:
            return None
        locks: dict[str, int] = {}
        if self.max_concurrency is not None:
            locks[concurrency_key(self.name)] = self.max_concurrency
        if self.lock_key is not None:
            try:
                key = self.lock_key.format_map(context)
            except (KeyError, IndexError, AttributeError, ValueError) as exc:
                raise ValueError(
                    f"task {self.name!r}: lock_key {self.lock_key!r} cannot be filled from the "
                    f"context ({exc!r}); name fields of {self.context_class.__qualname__}"
                ) from None
            locks["key:" + key] = 1
        return locks

    def __repr__(self) -> str:
        return f"TaskDefinition(name={self.name!r}, context_class={self.context_class.__qualname__})"

    def validate_context(self, context: Any) -> BaseModel:
        """The context as an instance of ``context_class`` (from a model, or a dict off the wire)."""
        if isinstance(context, self.context_class):
            return context
        if isinstance(context, BaseModel):
            context = context.model_dump(mode="json")
        return self.context_class.model_validate(context)


def concurrency_key(task_name: str) -> str:
    """The lock key ``max_concurrency`` counts a task's runs under (``key:`` prefixes
    ``lock_key`` keys, so the two never meet)."""
    return "task:" + task_name


def check_lock_template(name: str, template: str, context_class: type[BaseModel]) -> None:
    """A ``lock_key`` template names only fields of the context: checked at registration, so
    a typo fails at import instead of at every enqueue."""
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"task {name!r}: lock_key {template!r} is not a valid template ({exc})") from None
    known = set(context_class.model_fields)
    for field in fields:
        head = field.split(".", 1)[0].split("[", 1)[0]
        if head not in known:
            raise ValueError(
                f"task {name!r}: lock_key {template!r} names {{{field}}}, which is not a field of "
                f"{context_class.__qualname__} (fields: {', '.join(sorted(known)) or 'none'})"
            )


def check_timeout(name: str, timeout: float | timedelta | None, what: str = "timeout") -> float | None:
    """``timeout`` in seconds (a number or a ``timedelta``), or a ValueError that says what to give."""
    if timeout is None:
        return None
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(
            f"task {name!r}: {what} must be a positive number of seconds or a timedelta, got {timeout!r}"
        )
    return float(timeout)


def infer_context_class(name: str, handler: Callable[..., Any]) -> type[BaseModel]:
    """The pydantic model annotated on the handler's ``context`` parameter, or a TypeError that shows the fix."""
    if not callable(handler):
        raise TypeError(f"task {name!r}: the handler must be callable, got {handler!r}")
    try:
        params = inspect.signature(handler).parameters
    except (TypeError, ValueError) as exc:  # builtins without a signature
        raise TypeError(f"task {name!r}: cannot read the handler's signature ({exc})") from exc
    where = f"task {name!r} ({getattr(handler, '__qualname__', handler)!r})"
    if "context" not in params:
        raise TypeError(
            f"{where}: the handler needs a `context` parameter annotated with a pydantic model. "
            f"Expected signature: {EXPECTED_SIGNATURE}"
        )
    try:
        hints = typing.get_type_hints(handler)
    except Exception as exc:  # an annotation that names something undefined
        raise TypeError(
            f"{where}: cannot resolve the handler's annotations ({exc}). "
            f"Expected signature: {EXPECTED_SIGNATURE}"
        ) from exc
    annotation = hints.get("context")
    if annotation is None:
        raise TypeError(
            f"{where}: `context` has no type annotation, so agentexec cannot validate it. "
            f"Expected signature: {EXPECTED_SIGNATURE}"
        )
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        raise TypeError(
            f"{where}: `context` is annotated {annotation!r}, which is not a pydantic BaseModel subclass. "
            f"Expected signature: {EXPECTED_SIGNATURE}"
        )
    return annotation


def infer_result_type(handler: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model the handler's return is annotated with, or ``None``."""
    try:
        annotation = typing.get_type_hints(handler).get("return")
    except Exception:
        return None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


class Envelope(BaseModel):
    """The wire form of a queued task: JSON, never pickle."""

    model_config = ConfigDict(frozen=True)

    v: int = 1
    agent_id: UUID
    task_name: str
    context: dict[str, Any]
    priority: Priority = Priority.LOW
    queue_name: str
    #: runs so far (see docs/worker-pool.md); a payload outside 0..2**31-1 is not a task and is
    #: dead-lettered when taken: a negative count would never reach ``max_attempts``
    attempts: int = Field(default=0, ge=0, le=MAX_ATTEMPTS_FIELD)
    enqueued_at: float = 0.0
    #: set by the pool for pipeline steps and other internal work; never by users
    kind: str = "task"
    #: the activity's metadata (tenancy), so a worker that has to create the activity itself
    #: (its producer died, or is a moment behind) creates it with the right tenant
    metadata: dict[str, Any] | None = None
    #: retries so far (``@pool.task(name, retries=N)``): runs that failed and were queued
    #: again. Last: the Redis reaper edits ``"attempts":N`` where ``,"enqueued_at":`` follows
    retries: int = Field(default=0, ge=0, le=MAX_ATTEMPTS_FIELD)
    #: the producer's trace context (W3C ``traceparent``) when tracing is configured
    #: (:mod:`agentexec.telemetry`), so the run continues the trace of the web request
    trace: dict[str, str] | None = None
    #: the locks the run must hold (``lock_key=``, ``max_concurrency=``): lock key -> how many
    #: runs may hold it at once; filled at enqueue, or by the worker when the producer did not
    #: know the task (:class:`agentexec.backends.TaskLocks`)
    locks: dict[str, int] | None = None
    #: ``ax.enqueue(..., key=...)``: no second task is queued under this key while this one is
    #: queued or running (:class:`agentexec.backends.EnqueueKeys`)
    key: str | None = None

    def next_attempt(self) -> Envelope:
        return self.model_copy(update={"attempts": self.attempts + 1})


#: what a task's handler returns (``Task[str]`` for ``async def h(...) -> str``); a bare
#: ``Task`` is ``Task[Any]``
R = TypeVar("R", default=Any)


class Task(BaseModel, Generic[R]):
    """One queued run of a registered task, as returned by :func:`agentexec.enqueue`.

    Generic over its handler's result type for type checkers: ``ax.enqueue(handler, ctx)``
    (the ``@pool.task`` function itself) returns ``Task[<handler's return type>]`` and
    ``await ax.get_result(task)`` has that type; ``ax.enqueue("name", ctx)`` returns
    ``Task[Any]``. At run time every task is a plain ``Task``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    agent_id: UUID
    task_name: str
    context: SerializeAsAny[BaseModel]
    queue_name: str | None = None
    priority: Priority = Priority.LOW
    attempts: int = 0
    #: the activity's metadata (``ax.enqueue(..., metadata=...)``)
    metadata: dict[str, Any] | None = None
    #: the trace context its envelope carried (:mod:`agentexec.telemetry`)
    trace: dict[str, str] | None = None
    #: the locks its run holds (see :attr:`Envelope.locks`)
    locks: dict[str, int] | None = None
    #: its dedup key (``ax.enqueue(..., key=...)``)
    key: str | None = None

    @classmethod
    def create(cls, task_name: str, context: BaseModel) -> Task[Any]:
        """A new task with a fresh ``agent_id`` (called by ``enqueue()``)."""
        if not isinstance(context, BaseModel):
            raise TypeError(
                f"the context of task {task_name!r} must be a pydantic BaseModel instance, "
                f"got {type(context).__name__}. Define `class MyContext(BaseModel): ...` and pass "
                f"MyContext(...)."
            )
        return cls(agent_id=uuid.uuid4(), task_name=task_name, context=context)

    @classmethod
    def queued(
        cls,
        task_name: str,
        context: BaseModel,
        priority: Priority,
        queue_name: str,
        metadata: dict[str, Any] | None = None,
    ) -> Task[Any]:
        """A new task from arguments ``enqueue`` has already checked, in one constructor call
        (pydantic's compiled validation is faster than ``model_construct`` here, measured)."""
        if metadata is None:
            return cls(
                agent_id=uuid.uuid4(), task_name=task_name, context=context,
                queue_name=queue_name, priority=priority,
            )
        return cls(
            agent_id=uuid.uuid4(), task_name=task_name, context=context,
            queue_name=queue_name, priority=priority, metadata=metadata,
        )

    def to_envelope(self, queue_name: str, trace: dict[str, str] | None = None) -> Envelope:
        if self.locks is not None or self.key is not None:
            return Envelope(
                agent_id=self.agent_id, task_name=self.task_name,
                context=self.context.model_dump(mode="json"), priority=self.priority,
                queue_name=queue_name, attempts=self.attempts, enqueued_at=time.time(),
                metadata=self.metadata, trace=trace, locks=self.locks, key=self.key,
            )
        if trace is not None:
            return Envelope(
                agent_id=self.agent_id, task_name=self.task_name,
                context=self.context.model_dump(mode="json"), priority=self.priority,
                queue_name=queue_name, attempts=self.attempts, enqueued_at=time.time(),
                metadata=self.metadata, trace=trace,
            )
        return Envelope(
            agent_id=self.agent_id,
            task_name=self.task_name,
            context=self.context.model_dump(mode="json"),
            priority=self.priority,
            queue_name=queue_name,
            attempts=self.attempts,
            enqueued_at=time.time(),
            metadata=self.metadata,
        )

    async def execute(self) -> R:
        """Run the handler through the whole lifecycle (RUNNING → COMPLETE/ERROR, result stored).

        Called by workers; returns the handler's value, raises what the handler raised.
        """
        from agentexec.lifecycle import execute_task

        result: R = await execute_task(self)
        return result
