"""Riding out a Redis outage: exponential backoff, and at most one log line per second."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from agentexec._redact import redact
from agentexec.backoff import Backoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("agentexec.redis")

#: errors after which the same call may succeed once Redis is back (includes BusyLoadingError,
#: a subclass of ConnectionError, raised while a restarted Redis loads its AOF)
TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ConnectionError,
)

#: replies of a Redis that cannot serve writes for now (loading, out of memory, a failed
#: snapshot, a replica, a cluster failing over): the same write succeeds once that clears
_TRANSIENT_REPLIES = ("LOADING", "OOM", "MISCONF", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY ")


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed later unchanged (:mod:`agentexec.faults`): Redis
    unreachable, timing out, or refusing writes for a reason that clears by itself; anything
    else (a reply refusing this data) is permanent."""
    if isinstance(exc, (*TRANSIENT, OSError, ReadOnlyError, OutOfMemoryError, MasterDownError)):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).upper().startswith(_TRANSIENT_REPLIES)
    return False


FIRST_DELAY = 0.05
MAX_DELAY = 1.0
LOG_INTERVAL = 1.0

_T = TypeVar("_T")


class _OutageLog:
    """Process-wide: many consumers failing at once still print one line per second."""

    def __init__(self) -> None:
        self.last = 0.0
        self.down = False
        self.suppressed = 0

    def failed(self, what: str, exc: BaseException) -> None:
        self.down = True
        now = time.monotonic()
        if now - self.last < LOG_INTERVAL:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more failures since the last message)" if self.suppressed else ""
        self.last, self.suppressed = now, 0
        log.warning("agentexec: Redis unavailable during %s: %s; retrying%s", what, redact(exc), more)

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.info("agentexec: Redis reachable again")


outage = _OutageLog()


def redis_backoff() -> Backoff:
    """Delays for consecutive failures: 50 ms doubling up to 1 s."""
    return Backoff(FIRST_DELAY, MAX_DELAY)


async def retrying(what: str, call: Callable[[], Awaitable[_T]], within: float) -> _T:
    """``await call()``, retried on transient errors for up to ``within`` seconds, then re-raised."""
    deadline = time.monotonic() + within
    backoff = redis_backoff()
    while True:
        try:
            result = await call()
        except TRANSIENT as exc:
            outage.failed(what, exc)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            await backoff.sleep(remaining)
        else:
            outage.ok()
            return result
