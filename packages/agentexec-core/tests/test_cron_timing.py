"""Fire-time math: cron expressions (DST included) and intervals, against hand-checked cases."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agentexec.config import CONF
from agentexec.schedule.timing import CronTiming, IntervalTiming, make_timing, parse_interval

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def fires(timing: CronTiming | IntervalTiming, after: datetime, count: int) -> list[datetime]:
    out = []
    for _ in range(count):
        after = timing.next_after(after)
        out.append(after)
    return out


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * *", utc(2024, 5, 1, 12, 3, 10), utc(2024, 5, 1, 12, 5)),
        ("*/5 * * * *", utc(2024, 5, 1, 12, 5), utc(2024, 5, 1, 12, 10)),  # strictly after
        ("0 9 * * 1-5", utc(2024, 3, 8, 10, 0), utc(2024, 3, 11, 9, 0)),  # Fri after 9 -> Mon
        ("0 0 1 * *", utc(2024, 1, 31, 23, 59), utc(2024, 2, 1)),
        ("0 0 29 2 *", utc(2023, 3, 1), utc(2024, 2, 29)),  # leap day
        ("0 */2 * * *", utc(2024, 5, 1, 13, 0), utc(2024, 5, 1, 14, 0)),
        ("0 0 * * 1", utc(2024, 5, 1), utc(2024, 5, 6)),  # Monday midnight
        ("@hourly", utc(2024, 5, 1, 13, 59, 59), utc(2024, 5, 1, 14, 0)),
        ("@daily", utc(2024, 12, 31, 0, 0, 1), utc(2025, 1, 1)),
    ],
)
def test_cron_next_fire_known_cases(expression: str, after: datetime, expected: datetime) -> None:
    assert CronTiming(expression, UTC).next_after(after) == expected


def test_cron_in_a_timezone_fires_at_local_wall_clock() -> None:
    paris = CronTiming("0 9 * * *", ZoneInfo("Europe/Paris"))
    nxt = paris.next_after(utc(2024, 7, 1, 12, 0))
    assert nxt == utc(2024, 7, 2, 7, 0)  # 09:00 CEST
    assert nxt.astimezone(paris.tz).hour == 9


def test_cron_daily_across_spring_forward_keeps_local_time() -> None:
    # New York jumps from 02:00 EST to 03:00 EDT on 2024-03-10
    got = fires(CronTiming("0 9 * * *", NY), datetime(2024, 3, 9, 10, 0, tzinfo=NY), 3)
    assert [t.astimezone(UTC) for t in got] == [
        utc(2024, 3, 10, 13, 0), utc(2024, 3, 11, 13, 0), utc(2024, 3, 12, 13, 0),
    ]
    assert fires(CronTiming("0 9 * * *", NY), datetime(2024, 3, 8, 10, tzinfo=NY), 1) == [
        utc(2024, 3, 9, 14, 0)  # still EST the day before
    ]


def test_cron_time_skipped_by_spring_forward_fires_after_the_jump() -> None:
    got = fires(CronTiming("30 2 * * *", NY), datetime(2024, 3, 9, 12, 0, tzinfo=NY), 2)
    assert got[0] == utc(2024, 3, 10, 7, 0)  # 03:00 EDT: 02:30 does not exist that day
    assert got[1] == utc(2024, 3, 11, 6, 30)  # 02:30 EDT the next day
    berlin = fires(CronTiming("0 2 * * *", BERLIN), datetime(2024, 3, 30, 12, tzinfo=BERLIN), 2)
    assert berlin == [utc(2024, 3, 31, 1, 0), utc(2024, 4, 1, 0, 0)]


def test_cron_fixed_hour_fires_once_on_fall_back() -> None:
    # 2024-11-03: 01:00-02:00 happens twice in New York (EDT, then EST)
    got = fires(CronTiming("30 1 * * *", NY), datetime(2024, 11, 2, 12, tzinfo=NY), 2)
    assert got == [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]  # not 06:30Z on the 3rd


def test_cron_wildcard_hour_follows_real_time_on_fall_back() -> None:
    got = fires(CronTiming("*/30 * * * *", NY), datetime(2024, 11, 3, 0, 50, tzinfo=NY), 6)
    assert [t.astimezone(UTC) for t in got] == [
        utc(2024, 11, 3, 5, 0), utc(2024, 11, 3, 5, 30),  # 01:00, 01:30 EDT
        utc(2024, 11, 3, 6, 0), utc(2024, 11, 3, 6, 30),  # 01:00, 01:30 EST
        utc(2024, 11, 3, 7, 0), utc(2024, 11, 3, 7, 30),  # 02:00, 02:30 EST
    ]
    gaps = {b - a for a, b in itertools.pairwise(got)}
    assert gaps == {timedelta(minutes=30)}


def test_cron_timezone_defaults_to_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "timezone", "Asia/Tokyo")
    timing = make_timing(cron="0 9 * * *")
    assert timing.next_after(utc(2024, 5, 1, 0, 30)) == utc(2024, 5, 2, 0, 0)  # 09:00 JST
    assert make_timing(cron="0 9 * * *", timezone="UTC").next_after(utc(2024, 5, 1)) == utc(2024, 5, 1, 9)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("61 * * * *", "invalid cron expression '61 * * * *'"),
        ("* * *", "expected 5 fields"),
        ("every day", "expected 5 fields"),
        ("0 9 * * * *", "expected 5 fields"),  # 6 fields: seconds are not standard cron
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_bad_cron_expressions_are_rejected_with_the_expression(expression: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="cron expression") as info:
        CronTiming(expression, UTC)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1 second", 1), ("30 seconds", 30), ("5 minutes", 300), ("1 minute", 60),
        ("1 hour", 3600), ("2 hours", 7200), ("2 days", 172800), ("1 week", 604800),
        ("3 weeks", 1814400), ("every 10 minutes", 600), ("30s", 30), ("15 min", 900),
        ("  4  HOURS ", 14400), (45, 45), (timedelta(minutes=2), 120),
    ],
)
def test_interval_formats(text: str | int | timedelta, seconds: int) -> None:
    assert parse_interval(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5 fortnights", "minutes", "five minutes", "0 seconds", "1.5 hours", "", 0.5, True])
def test_bad_intervals_name_the_formats(text: object) -> None:
    with pytest.raises(ValueError, match="invalid interval"):
        parse_interval(text)  # type: ignore[arg-type]


def test_interval_ticks_are_aligned_so_every_pool_agrees() -> None:
    every5 = IntervalTiming(timedelta(minutes=5))
    assert every5.next_after(utc(2024, 5, 1, 12, 3, 10)) == utc(2024, 5, 1, 12, 5)
    assert every5.next_after(utc(2024, 5, 1, 12, 5)) == utc(2024, 5, 1, 12, 10)
    every_second = IntervalTiming(timedelta(seconds=1))
    assert every_second.next_after(utc(2024, 5, 1, 12, 0, 0).replace(microsecond=999_999)) == utc(2024, 5, 1, 12, 0, 1)


def test_interval_with_start_anchor_and_no_drift() -> None:
    timing = make_timing(every="90 minutes", timezone="Europe/Paris", start="2024-01-01T09:00")
    first = timing.next_after(utc(2024, 6, 1, 0, 0))
    # 09:00 Paris on 2024-01-01 is 08:00Z; ticks every 90 min from there
    assert (first - utc(2024, 1, 1, 8, 0)) % timedelta(minutes=90) == timedelta(0)
    ticks = fires(timing, first, 1000)  # type: ignore[arg-type]
    assert {b - a for a, b in itertools.pairwise([first, *ticks])} == {timedelta(minutes=90)}
    assert "from 2024-01-01T09:00:00+01:00" in timing.describe()


def test_interval_is_elapsed_time_across_dst() -> None:
    timing = make_timing(every="1 day", timezone="America/New_York", start="2024-03-09T09:00")
    got = fires(timing, datetime(2024, 3, 9, 10, tzinfo=NY), 1)  # type: ignore[arg-type]
    assert got[0] == utc(2024, 3, 10, 14, 0)
    assert got[0].astimezone(NY).hour == 10  # 24h later is 10:00 EDT: use cron for wall-clock


def test_make_timing_needs_exactly_one_rule_and_a_known_zone() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        make_timing()
    with pytest.raises(ValueError, match="exactly one"):
        make_timing(cron="* * * * *", every="1 minute")
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        make_timing(cron="* * * * *", timezone="Mars/Olympus")
