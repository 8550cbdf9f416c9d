"""Task outcomes: how a handler's return value (or its failure) is stored and read back.

Values are JSON. A pydantic model is stored with its ``module:qualname`` and rebuilt only from a
class the reading process already has (or the caller names with ``result_type=``): we never import
a module because stored data names it, since whoever can write to the result store would then
choose code to run.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_json

_any = TypeAdapter(Any)


class TaskFailedError(Exception):
    """The task failed for good: its handler raised, or it was dead-lettered."""

    def __init__(self, task_name: str, agent_id: UUID | str, error: str, attempts: int = 1) -> None:
        self.task_name = task_name
        self.agent_id = agent_id
        self.error = error
        self.attempts = attempts
        super().__init__(
            f"task {task_name!r} ({agent_id}) failed after {attempts} attempt(s): {error}"
        )


class TaskCancelledError(TaskFailedError):
    """The task was cancelled (``ax.cancel``) before it finished: queued, it never started;
    running, its handler was cancelled. ``reason`` is the one given to ``ax.cancel``."""

    def __init__(self, task_name: str, agent_id: UUID | str, reason: str, attempts: int = 0) -> None:
        self.reason = reason
        super().__init__(task_name, agent_id, reason, attempts)
        self.args = (f"task {task_name!r} ({agent_id}) was cancelled: {reason}",)

    def __str__(self) -> str:
        return str(self.args[0])


class Outcome(BaseModel):
    """What the result store holds for one task."""

    status: Literal["ok", "error", "cancelled"]
    task_name: str = ""
    value: Any = None
    model: str | None = None  # module:qualname of a pydantic result
    error: str | None = None
    attempts: int = 1

    @classmethod
    def ok(cls, task_name: str, value: Any, attempts: int = 1) -> Outcome:
        """The outcome of a handler that returned ``value``; a value whose JSON is over
        ``CONF.max_result_bytes`` raises :class:`agentexec.limits.TooLargeError` (the task
        fails with it, instead of its result filling the result store)."""
        if isinstance(value, BaseModel):
            cls_ = type(value)
            outcome = cls(
                status="ok",
                task_name=task_name,
                value=value.model_dump(mode="json"),
                model=f"{cls_.__module__}:{cls_.__qualname__}",
                attempts=attempts,
            )
        else:
            outcome = cls(
                status="ok", task_name=task_name, value=_any.dump_python(value, mode="json"),
                attempts=attempts,
            )
        if outcome.value is not None and not isinstance(outcome.value, bool | int | float):
            _check_result_size(outcome.value)
        return outcome

    @classmethod
    def failed(cls, task_name: str, error: str, attempts: int = 1) -> Outcome:
        return cls(status="error", task_name=task_name, error=error, attempts=attempts)

    @classmethod
    def cancelled(cls, task_name: str, reason: str, attempts: int = 0) -> Outcome:
        """The outcome of a task ``ax.cancel`` stopped; ``attempts``: runs it had started."""
        return cls(status="cancelled", task_name=task_name, error=reason, attempts=attempts)

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, data: bytes | str) -> Outcome:
        return cls.model_validate_json(data)

    def unwrap(
        self,
        agent_id: UUID | str,
        result_type: type[Any] | None = None,
        registered: type[BaseModel] | None = None,
    ) -> Any:
        """The value, rebuilt as its model where that is safe; raises TaskFailedError on failure.

        ``result_type`` (the caller's) wins; then the model recorded with the value, when this
        process has it; then ``registered``, the ``result_type`` the task's definition declares
        in this process (``pool.add_task(..., result_type=...)``)."""
        if self.status == "cancelled":
            raise TaskCancelledError(self.task_name, agent_id, self.error or "cancelled", self.attempts)
        if self.status == "error":
            raise TaskFailedError(self.task_name, agent_id, self.error or "unknown error", self.attempts)
        if result_type is not None:
            return TypeAdapter(result_type).validate_python(self.value)
        if self.model:
            model_cls = _known_model(self.model)
            if model_cls is not None:
                return model_cls.model_validate(self.value)
        if registered is not None and isinstance(self.value, dict):
            return registered.model_validate(self.value)
        return self.value


def _check_result_size(value: Any) -> None:
    from agentexec.config import CONF
    from agentexec.limits import check_size

    limit = CONF.max_result_bytes
    if isinstance(value, str) and len(value) * 3 + 2 <= limit:
        return  # fits, escapes aside: measuring it would cost a copy
    try:
        size = len(to_json(value))
    except Exception:
        return  # not encodable: the finish path reports that itself
    check_size("result", size, limit, "max_result_bytes")


def _known_model(path: str) -> type[BaseModel] | None:
    """The model class ``module:qualname`` names, if the reading process already has it.

    Looked up in the namespaces themselves (``vars()``), never with ``getattr``: a module's
    ``__getattr__`` (``agentexec``'s lazy names, for one) or a class's metaclass would import
    or run code the stored data chose (``agentexec:OpenAIRunner`` would import the OpenAI SDK).
    """
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None and module_name == "__main__":
        module = sys.modules.get("__mp_main__")
    if module is None or not qualname:
        return None
    obj: Any = module
    for part in qualname.split("."):
        namespace = _namespace(obj)
        if namespace is None:
            return None
        obj = namespace.get(part)
        if obj is None:
            return None
    return obj if isinstance(obj, type) and issubclass(obj, BaseModel) else None


def _namespace(obj: Any) -> Mapping[str, Any] | None:
    """The attributes ``obj`` really holds (a module's or a class's ``__dict__``), or None."""
    if not isinstance(obj, ModuleType | type):
        return None
    try:
        namespace = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return None
    return namespace if isinstance(namespace, dict | MappingProxyType) else None
