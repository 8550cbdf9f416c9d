"""Step definitions, and the checks that run when a pipeline class is created.

Everything a pipeline can get wrong before it runs is reported here, at class creation: step
orders that ``sorted()`` cannot compare, duplicate orders, and a step that cannot accept what the
step before it returns (as far as the annotations tell).
"""

from __future__ import annotations

import inspect
import itertools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from types import NoneType
from typing import Any

from pydantic import BaseModel

#: attribute that ``@pipeline.step`` puts on the function it decorates
STEP_MARK = "__agentexec_step__"


class PipelineDefinitionError(TypeError):
    """A pipeline class is wrong in a way that is known before it runs."""


@dataclass(frozen=True, slots=True)
class StepMark:
    """What ``@pipeline.step(order, description)`` records on a function."""

    owner: object  # the Pipeline whose decorator was used
    order: int | str
    description: str | None


@dataclass(frozen=True, slots=True)
class Arity:
    """How many positional arguments a step accepts (``maximum`` None: any number)."""

    minimum: int
    maximum: int | None
    names: tuple[str, ...]

    def accepts(self, count: int) -> bool:
        return self.minimum <= count and (self.maximum is None or count <= self.maximum)

    def describe(self) -> str:
        if self.maximum is None:
            return f"{self.minimum} or more positional arguments"
        if self.minimum == self.maximum:
            return f"{self.minimum} parameter(s)"
        return f"{self.minimum} to {self.maximum} parameters"


@dataclass(frozen=True, slots=True)
class StepDefinition:
    """One step of a pipeline class, in run order."""

    name: str
    order: int | str
    handler: Callable[..., Any]
    description: str
    arity: Arity
    #: resolved annotations of the positional parameters (missing ones are absent)
    param_types: dict[str, Any]
    #: resolved return annotation, ``inspect.Parameter.empty`` when there is none
    return_type: Any
    is_async: bool

    @property
    def label(self) -> str:
        return self.description or self.name


def mark(owner: object, order: Any, description: str | None, func: Any) -> None:
    """Validate what ``@pipeline.step`` got and record it on ``func``."""
    if isinstance(order, bool) or not isinstance(order, int | str):
        raise PipelineDefinitionError(
            f"@pipeline.step(order): order must be an int or a str, got {order!r} "
            f"({type(order).__name__}); steps run in sorted(order) order"
        )
    if description is not None and not isinstance(description, str):
        raise PipelineDefinitionError(
            f"@pipeline.step(description=...): description must be a str, got {description!r}"
        )
    if isinstance(func, staticmethod | classmethod):
        raise PipelineDefinitionError(
            f"@pipeline.step cannot decorate a {type(func).__name__}: a step is a plain method "
            f"`async def step(self, ...)`"
        )
    if not inspect.isfunction(func):
        raise PipelineDefinitionError(
            f"@pipeline.step must decorate a method defined with def/async def, got {func!r}"
        )
    setattr(func, STEP_MARK, StepMark(owner, order, description))


def collect(cls: type, owner: object) -> list[StepDefinition]:
    """The steps of ``cls`` (and its bases), sorted, checked; raises PipelineDefinitionError."""
    found: dict[str, tuple[Callable[..., Any], StepMark]] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            step_mark = getattr(value, STEP_MARK, None)
            if isinstance(step_mark, StepMark):
                found[attr] = (value, step_mark)
            else:
                found.pop(attr, None)  # overridden by something that is not a step
    where = f"pipeline class {cls.__qualname__}"
    if not found:
        raise PipelineDefinitionError(
            f"{where} has no steps: decorate its methods with @pipeline.step(order)"
        )
    for name, (_, step_mark) in found.items():
        if step_mark.owner is not owner:
            raise PipelineDefinitionError(
                f"{where}: step {name!r} is decorated with another pipeline's @step; use the "
                f"decorator of the pipeline whose .Base the class extends"
            )
    _check_orders(where, {name: m.order for name, (_, m) in found.items()})
    steps = [_define(where, name, func, m) for name, (func, m) in found.items()]
    steps.sort(key=lambda s: s.order)  # type: ignore[arg-type, return-value]  # one type, checked
    _check_flow(where, steps)
    return steps


def _check_orders(where: str, orders: dict[str, int | str]) -> None:
    kinds = {type(o) for o in orders.values()}
    if len(kinds) > 1:
        listing = ", ".join(f"{n}={o!r}" for n, o in orders.items())
        raise PipelineDefinitionError(
            f"{where} mixes int and str step orders ({listing}): sorted() cannot compare them. "
            f"Use all ints (0, 1, 2) or all strs ('a_fetch', 'b_process')."
        )
    seen: dict[int | str, str] = {}
    for name, order in orders.items():
        if order in seen:
            raise PipelineDefinitionError(
                f"{where}: steps {seen[order]!r} and {name!r} share the order {order!r}, so "
                f"their run order is ambiguous; give each step its own order"
            )
        seen[order] = name


def _define(where: str, name: str, func: Callable[..., Any], step_mark: StepMark) -> StepDefinition:
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
    ):
        raise PipelineDefinitionError(
            f"{where}: step {name!r} must be a method taking `self` first: "
            f"`async def {name}(self, ...)`"
        )
    params = params[1:]
    minimum, names = 0, []
    maximum: int | None = 0
    for p in params:
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
            if maximum is not None:
                maximum += 1
            if p.default is inspect.Parameter.empty:
                minimum += 1
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            names.append("*" + p.name)
            maximum = None
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty:
            raise PipelineDefinitionError(
                f"{where}: step {name!r} has a required keyword-only parameter {p.name!r}, which "
                f"a step can never receive (steps get the previous value positionally)"
            )
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # an annotation naming something undefined: no type-based checks then
        hints = {}
    return StepDefinition(
        name=name,
        order=step_mark.order,
        handler=func,
        description=step_mark.description or name,
        arity=Arity(minimum, maximum, tuple(names)),
        param_types={p.name: hints[p.name] for p in params if p.name in hints},
        return_type=hints.get("return", inspect.Parameter.empty),
        is_async=inspect.iscoroutinefunction(func),
    )


def returned_count(annotation: Any) -> int | None:
    """How many positional arguments a value of this return annotation becomes (None: unknown)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    if annotation is None or annotation is NoneType:
        return 1
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return returned_count(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return None  # which member comes back is only known at run time
    if origin is typing.Literal:
        return 1
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return None
        return 0 if args == ((),) else len(args)
    if origin is not None:
        # generics (list[int], dict[str, X]) are one value; unions and the like are unknown
        return 1 if isinstance(origin, type) and not issubclass(origin, tuple) else None
    if isinstance(annotation, type):
        if issubclass(annotation, tuple):
            fields = getattr(annotation, "_fields", None)  # NamedTuple: fixed size
            return len(fields) if isinstance(fields, tuple) else None
        return 1
    return None


def _check_flow(where: str, steps: list[StepDefinition]) -> None:
    first = steps[0]
    if not first.arity.accepts(1):
        raise PipelineDefinitionError(
            f"{where}: the first step {first.name!r} receives the pipeline's context as one "
            f"argument, but it expects {first.arity.describe()} "
            f"({', '.join(first.arity.names) or 'none'}); define it as "
            f"`async def {first.name}(self, ctx: MyContext)`"
        )
    for prev, step in itertools.pairwise(steps):
        count = returned_count(prev.return_type)
        if count is None or step.arity.accepts(count):
            continue
        shown = getattr(prev.return_type, "__name__", None) if typing.get_origin(
            prev.return_type
        ) is None else None
        annotation = shown or repr(prev.return_type)
        passed = "a tuple unpacked into" if count != 1 else "one value passed as"
        raise PipelineDefinitionError(
            f"{where}: step {prev.name!r} returns {count} values (-> {annotation}), {passed} "
            f"{count} positional argument(s), but step {step.name!r} expects "
            f"{step.arity.describe()} ({', '.join(step.arity.names) or 'none'}). Change one of "
            f"the two signatures so they match."
        )
    for prev, step in itertools.pairwise(steps):
        _check_types(where, prev, step)
    last = steps[-1]
    if _is_plain_tuple(last.return_type):
        raise PipelineDefinitionError(
            f"{where}: the last step {last.name!r} returns a tuple (-> {_shown(last.return_type)}), "
            f"but its value is the pipeline's result, one value: return a model (or another single "
            f"value) that holds the parts"
        )


def _returned_types(annotation: Any) -> list[Any] | None:
    """The annotations of the values a return annotation becomes, or None when unknown."""
    count = returned_count(annotation)
    if count is None:
        return None
    if _is_plain_tuple(annotation):
        return list(typing.get_args(annotation))
    if count == 1:
        return [annotation]
    return None  # a NamedTuple: its fields' annotations are not worth guessing here


def _check_types(where: str, prev: StepDefinition, step: StepDefinition) -> None:
    """A model flowing into a parameter annotated with an unrelated class (or a class into a
    model parameter): the original agentexec rejects it, and so do we, before anything runs.
    Only concrete classes with a pydantic model on either side are compared; generics, unions
    and plain values (an ``int`` into a ``float``) are left to run time."""
    returned = _returned_types(prev.return_type)
    if returned is None:
        return
    params = [n for n in step.arity.names if not n.startswith("*")]
    for value_type, name in zip(returned, params, strict=False):
        param_type = step.param_types.get(name)
        if not (isinstance(value_type, type) and isinstance(param_type, type)):
            continue
        if not (is_model_type(value_type) or is_model_type(param_type)):
            continue
        if issubclass(value_type, param_type):
            continue
        raise PipelineDefinitionError(
            f"{where}: step {prev.name!r} returns {value_type.__name__} (-> "
            f"{_shown(prev.return_type)}), but step {step.name!r} takes it as {name}: "
            f"{param_type.__name__}. Annotate {name!r} with {value_type.__name__} (or a base "
            f"class of it), or return a {param_type.__name__}."
        )


def _is_plain_tuple(annotation: Any) -> bool:
    """``tuple[...]`` or bare ``tuple`` (not a NamedTuple, which is one record)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_plain_tuple(typing.get_args(annotation)[0])
    return typing.get_origin(annotation) is tuple or annotation is tuple


def _shown(annotation: Any) -> str:
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def is_model_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
