"""How long to wait before trying again: the one place that decides it.

Two kinds of waiting, one module:

- :class:`Backoff`, for a loop that keeps trying something that failed (a backend that is
  unreachable, a subscription that dropped): waits double from ``first`` up to ``most`` and go
  back to ``first`` after a success. Every retry loop of core and the adapters uses it, so none
  spins and none waits unboundedly.
- :func:`retry_delay`, for a *task* that failed and is retried later (``@pool.task(retries=)``):
  exponential with jitter, so many tasks failing together do not come back together.

Example::

    wait = Backoff(first=0.1, most=5.0)
    while True:
        try:
            await subscribe()
            wait.reset()
        except ConnectionError:
            await wait.sleep()
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import anyio

from agentexec.config import CONF

if TYPE_CHECKING:
    from agentexec.task import TaskDefinition


class Backoff:
    """Doubling waits between ``first`` and ``most`` seconds."""

    __slots__ = ("delay", "first", "most")

    def __init__(self, first: float = 0.05, most: float = 2.0) -> None:
        if not 0 < first <= most:
            raise ValueError(f"Backoff needs 0 < first <= most, got first={first}, most={most}")
        self.first = first
        self.most = most
        #: the next wait
        self.delay = first

    def next(self) -> float:
        """The wait to make now; the one after it is twice as long (at most ``most``)."""
        delay = self.delay
        self.delay = min(delay * 2, self.most)
        return delay

    async def sleep(self, limit: float | None = None) -> float:
        """Wait :meth:`next` seconds (at most ``limit``); returns how long that was."""
        delay = self.next()
        if limit is not None:
            delay = max(0.0, min(delay, limit))
        await anyio.sleep(delay)
        return delay

    def reset(self) -> None:
        """The thing worked: the next failure waits ``first`` again."""
        self.delay = self.first

    @property
    def backing_off(self) -> bool:
        """Whether a failure happened since the last :meth:`reset`."""
        return self.delay != self.first

    def __repr__(self) -> str:
        return f"Backoff(first={self.first}, most={self.most}, delay={self.delay})"


def retry_delay(definition: TaskDefinition, attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1 for the first) of a task of ``definition``:
    its ``backoff(attempt)`` when it is a function, or else exponential from its base
    (``CONF.retry_backoff`` when unset) with equal jitter — between half and all of
    ``base * 2 ** (attempt - 1)`` — so waits grow and retries of many tasks failing together
    spread out; at most ``CONF.retry_backoff_max``."""
    backoff = definition.backoff
    if callable(backoff):
        return max(0.0, float(backoff(attempt)))
    base = float(backoff) if backoff is not None else CONF.retry_backoff
    full = min(base * 2.0 ** (attempt - 1), CONF.retry_backoff_max)
    return float(full * (0.5 + random.random() / 2))
