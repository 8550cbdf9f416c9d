"""When a schedule fires: cron expressions (croniter) and fixed intervals.

Both are pure functions of time, so every pool computes the same fire times; that is what lets
the pools agree on who enqueues a tick (see :mod:`agentexec.schedule.scheduler`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_UNITS = {
    "second": 1, "seconds": 1, "sec": 1, "secs": 1, "s": 1,
    "minute": 60, "minutes": 60, "min": 60, "mins": 60, "m": 60,
    "hour": 3600, "hours": 3600, "hr": 3600, "hrs": 3600, "h": 3600,
    "day": 86400, "days": 86400, "d": 86400,
    "week": 604800, "weeks": 604800, "w": 604800,
}
_INTERVAL = re.compile(r"^\s*(?:every\s+)?(\d+)\s*([a-z]+)\s*$", re.IGNORECASE)
INTERVAL_HELP = (
    "expected '<number> <unit>' with unit seconds, minutes, hours, days or weeks "
    "(e.g. '30 seconds', '5 minutes', '1 hour', '2 days', '1 week')"
)
CRON_HELP = "expected 5 fields 'minute hour day month weekday' (e.g. '*/5 * * * *', '0 9 * * 1-5') or @hourly/@daily/@weekly/@monthly/@yearly"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Timing(Protocol):
    """A rule that yields fire times."""

    @property
    def tz(self) -> tzinfo: ...

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment``, in UTC.

        UTC because an instant must compare unambiguously: Python treats the repeated hour of a
        fall-back day as unequal to every time in another zone (PEP 495). Show it with
        ``.astimezone(timing.tz)``.
        """
        ...

    def describe(self) -> str:
        """The rule as the user wrote it, normalised (``cron 0 9 * * *``, ``every 5 minutes``)."""
        ...


def get_zone(name: str | tzinfo | None) -> tzinfo:
    """The timezone called ``name`` (an IANA name); ``None`` means ``CONF.timezone``."""
    if isinstance(name, tzinfo):
        return name
    if name is None:
        from agentexec.config import CONF

        name = CONF.timezone
    if not isinstance(name, str):
        raise ValueError(f"unknown timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'")
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}: use an IANA name such as 'UTC', 'Europe/Paris' or "
            f"'America/New_York'"
        ) from None


def zone_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def parse_interval(value: str | int | float | timedelta) -> timedelta:
    """``"5 minutes"``, ``"1 second"``, ``"every 2 days"``, ``"30s"``, a number of seconds or a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"invalid interval {value!r}: {INTERVAL_HELP}")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _INTERVAL.match(value)
        unit = _UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"invalid interval {value!r}: {INTERVAL_HELP}")
        seconds = float(int(match.group(1)) * unit)
    else:
        raise ValueError(f"invalid interval {value!r}: {INTERVAL_HELP}")
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"invalid interval {value!r}: it must be a whole number of seconds, at least 1")
    return timedelta(seconds=seconds)


def describe_interval(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    for name, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {name}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


@dataclass(frozen=True)
class IntervalTiming:
    """Every ``period`` of elapsed time, on ticks ``start + k * period``.

    The default ``start`` is the Unix epoch, so "every 5 minutes" fires at :00, :05, :10 ... and
    every pool, whenever it started, computes the same ticks. Elapsed time ignores DST: for
    wall-clock times ("9 AM every day") use cron.
    """

    period: timedelta
    tz: tzinfo = UTC
    start: datetime = EPOCH

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=self.tz))
        # whole seconds: fire times are claimed by their integer timestamp
        object.__setattr__(self, "start", self.start.replace(microsecond=0))

    def next_after(self, moment: datetime) -> datetime:
        step = int(self.period.total_seconds())
        base = int(self.start.timestamp())
        elapsed = moment.timestamp() - base
        k = math.floor(elapsed / step) + 1
        return datetime.fromtimestamp(base + k * step, UTC)

    def describe(self) -> str:
        text = f"every {describe_interval(self.period)}"
        if self.start != EPOCH:
            text += f" from {self.start.isoformat()}"
        return text


@dataclass(frozen=True)
class CronTiming:
    """A 5-field cron expression evaluated in ``tz``, wall-clock semantics like Vixie cron.

    DST: a time skipped by the spring-forward jump fires right after the jump (02:30 → 03:00);
    on fall-back a job with a fixed hour fires once, at the first of the two repeated times,
    while a job whose hour field is ``*`` follows real time and fires in both.
    """

    expression: str
    tz: tzinfo = UTC
    _fixed_hour: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expr = " ".join(self.expression.split())
        object.__setattr__(self, "expression", expr)
        if not expr.startswith("@") and len(expr.split()) != 5:
            raise ValueError(f"invalid cron expression {self.expression!r}: {CRON_HELP}")
        from croniter import CroniterError, croniter  # imported by the first cron schedule

        try:
            parsed = croniter(expr, datetime(2000, 1, 1, tzinfo=UTC))
        except (CroniterError, ValueError, KeyError) as exc:
            raise ValueError(f"invalid cron expression {self.expression!r}: {exc}; {CRON_HELP}") from None
        object.__setattr__(self, "_fixed_hour", parsed.expanded[1] != ["*"])
        try:  # "0 0 31 2 *" is valid syntax but never fires
            self.next_after(datetime.now(self.tz))
        except (CroniterError, ValueError) as exc:
            raise ValueError(f"cron expression {self.expression!r} never fires: {exc}") from None

    def next_after(self, moment: datetime) -> datetime:
        from croniter import croniter

        local = moment.astimezone(self.tz)
        it = croniter(self.expression, local)
        while True:
            nxt: datetime = it.get_next(datetime)
            if not (self._fixed_hour and _is_second_occurrence(nxt)):
                return nxt.astimezone(UTC)

    def describe(self) -> str:
        return f"cron {self.expression}"


def _is_second_occurrence(moment: datetime) -> bool:
    """True for the later of two equal wall-clock times on a fall-back day (01:30 EST after 01:30 EDT)."""
    wall = moment.replace(tzinfo=None)
    tz = moment.tzinfo
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    return first.utcoffset() != second.utcoffset() and moment.utcoffset() == second.utcoffset()


def looks_like_cron(value: Any) -> bool:
    """Whether ``value`` is written as a cron expression (five fields, or ``@hourly`` and kin)
    rather than an interval (``"5 minutes"``, a number of seconds, a timedelta)."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    return text.startswith("@") or len(text.split()) == 5


def make_timing(
    *,
    cron: str | None = None,
    every: str | int | float | timedelta | None = None,
    timezone: str | tzinfo | None = None,
    start: datetime | str | None = None,
) -> Timing:
    """One of ``cron=`` or ``every=`` (exactly one), in ``timezone`` (default ``CONF.timezone``)."""
    if (cron is None) == (every is None):
        raise ValueError("give exactly one of cron='* * * * *' or every='5 minutes'")
    tz = get_zone(timezone)
    if cron is not None:
        if start is not None:
            raise ValueError("start= applies to every= schedules only; a cron expression sets its own times")
        if not isinstance(cron, str):
            raise ValueError(f"invalid cron expression {cron!r}: {CRON_HELP}")
        return CronTiming(cron, tz)
    assert every is not None
    anchor = EPOCH if start is None else _parse_start(start, tz)
    return IntervalTiming(parse_interval(every), tz, anchor)


def _parse_start(value: Any, tz: tzinfo) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"invalid start {value!r}: expected an ISO date-time such as '2024-01-01T09:00'"
            ) from None
    if not isinstance(value, datetime):
        raise ValueError(f"invalid start {value!r}: expected a datetime or an ISO date-time string")
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)
