"""Schedules in words and the last implied fire time, on real APScheduler 3 triggers.

``previous_fire_time`` is checked against an oracle that does what a scheduler does: start at
the first fire of a window and follow ``get_next_fire_time(previous, ...)`` up to ``now``.
"""

from __future__ import annotations

import contextlib
import pickle
import time
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.sidecar.schedules.schedule import (
    describe,
    previous_fire_time,
    trigger_kind,
    zone_name,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST moves by half an hour
PLUS_TWO = timezone(timedelta(hours=2))


def cron(**fields: object) -> CronTrigger:
    fields.setdefault("timezone", "UTC")
    return CronTrigger(**fields)  # type: ignore[arg-type]


def crontab(expr: str, zone: object = "UTC") -> CronTrigger:
    return CronTrigger.from_crontab(expr, timezone=zone)


def at(*args: int, tz: object = UTC) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[arg-type, misc]


class TooFar(Exception):
    """The oracle would have to walk more fire times than the test can afford."""


def oracle(
    trigger: object, now: datetime, since: datetime | None = None, budget: int = 200_000
) -> datetime | None:
    """Brute force: walk the scheduler's own steps from ``since`` up to ``now``.

    The walk starts at the first fire after ``since`` and steps with
    ``get_next_fire_time(previous, previous)`` as a running scheduler does. ``since`` must lie
    before the last DST change: the step over one can skip fires that a walk started after it
    would see (hence 400 days by default). Without a fire since the default, it starts 8
    times further back; None only after 32 years without a fire.
    """
    gnft = trigger.get_next_fire_time  # type: ignore[attr-defined]
    start = since or now - timedelta(days=400)
    while True:
        fire, last = gnft(None, start), None
        for _ in range(budget):
            if fire is None or fire.astimezone(UTC) > now:
                break
            last, fire = fire, gnft(fire, fire)
        else:
            raise TooFar
        if last is not None or since or now - start > timedelta(days=366 * 32):
            return last
        start = now - (now - start) * 8


def instant(moment: datetime | None) -> float | None:
    """Compare instants: same-zone datetimes compare wall clocks and ignore ``fold``."""
    return None if moment is None else moment.timestamp()


# --- describe -----------------------------------------------------------------------------

TEXTS = [
    # The contract's own examples.
    (cron(hour=2, minute=0), "Daily at 02:00 UTC"),
    (IntervalTrigger(hours=6), "Every 6 hours"),
    (cron(day_of_week="mon", hour=9, minute=0), "Weekly on Monday at 09:00 UTC"),
    # Sub-daily frequencies.
    (crontab("* * * * *"), "Every minute"),
    (crontab("*/15 * * * *"), "Every 15 minutes"),
    (crontab("0,30 * * * *"), "Every 30 minutes"),
    (crontab("30 * * * *"), "Hourly at :30"),
    (crontab("0,30 * * * *", "Europe/Berlin"), "Every 30 minutes"),
    (crontab("5,20,35,50 * * * *"), "Hourly at :05, :20, :35 and :50"),
    (crontab("0 */2 * * *"), "Every 2 hours at :00"),
    (cron(hour="*/6"), "Every 6 hours at :00"),
    (cron(second="*/10"), "Every 10 seconds"),
    (cron(second="*"), "Every second"),
    (cron(minute=15, second=30), "Hourly at :15:30"),
    (cron(hour="9-17", minute=0), "Hourly at :00 from 09:00 to 17:00 UTC"),
    (cron(hour="1-23/2"), "Every 2 hours at :00 from 01:00 to 23:00 UTC"),
    (cron(hour="9", minute="*/5"), "Every 5 minutes from 09:00 to 09:55 UTC"),
    (
        cron(day_of_week="mon-fri", hour="9-17", minute="*/15", timezone=BERLIN),
        "Every 15 minutes from 09:00 to 17:45 Europe/Berlin on weekdays",
    ),
    (cron(hour="8-9", second="*/30"), "Every 30 seconds from 08:00:00 to 09:59:30 UTC"),
    (cron(day_of_week="fri", minute=5), "Hourly at :05 on Fridays (UTC)"),
    (cron(day=1, minute="*/5"), "Every 5 minutes on day 1 of the month (UTC)"),
    (cron(month=12, day=24, minute=0), "Hourly at :00 on December 24 (UTC)"),
    # Clock times, several a day.
    (cron(hour="6,18"), "Daily at 06:00 and 18:00 UTC"),
    (cron(hour=9, minute="*/20"), "Daily at 09:00, 09:20 and 09:40 UTC"),
    (cron(hour="*/5"), "Daily at 00:00, 05:00, 10:00, 15:00 and 20:00 UTC"),
    (cron(hour=2, minute=0, second=30), "Daily at 02:00:30 UTC"),
    # Weekdays (APScheduler counts from Monday = 0, crontab from Sunday = 0).
    (crontab("30 8 * * mon-fri"), "Weekdays at 08:30 UTC"),
    (crontab("30 8 * * 0-4"), "Weekdays at 08:30 UTC"),
    (crontab("0 9 * * 1"), "Weekly on Tuesday at 09:00 UTC"),
    (cron(day_of_week="mon,thu", hour=7), "Every Monday and Thursday at 07:00 UTC"),
    (cron(day_of_week="mon,wed,fri", hour=7), "Every Monday, Wednesday and Friday at 07:00 UTC"),
    (cron(day_of_week="sat,sun", hour=10), "Weekends at 10:00 UTC"),
    (cron(day_of_week="mon-sat", hour=10), "Daily except Sunday at 10:00 UTC"),
    (cron(day_of_week="*", hour=10), "Daily at 10:00 UTC"),
    # Monthly and yearly.
    (cron(day=1), "Monthly on day 1 at 00:00 UTC"),
    (cron(day="1,15", hour=12), "Monthly on days 1 and 15 at 12:00 UTC"),
    (cron(day="1-7", hour=12), "Monthly on days 1 to 7 at 12:00 UTC"),
    (
        cron(day="last", hour=23, minute=30, timezone=BERLIN),
        "Monthly on the last day at 23:30 Europe/Berlin",
    ),
    (cron(day="1st mon", hour=9), "Monthly on the first Monday at 09:00 UTC"),
    (cron(day="last fri", hour=17), "Monthly on the last Friday at 17:00 UTC"),
    (cron(month=1, day=1), "Yearly on January 1 at 00:00 UTC"),
    (cron(month="feb", day="last", hour=6), "Yearly on the last day of February at 06:00 UTC"),
    (cron(month=9, day="1st mon", hour=8), "Yearly on the first Monday of September at 08:00 UTC"),
    (cron(month="1,4,7,10", day=1), "Monthly on day 1 in Jan, Apr, Jul and Oct at 00:00 UTC"),
    (cron(month="*/3", day=1, hour=3), "Monthly on day 1 in Jan, Apr, Jul and Oct at 03:00 UTC"),
    (cron(month="jan,jul", day=1, hour=3), "Monthly on day 1 in January and July at 03:00 UTC"),
    (cron(month="jun-aug", hour=5), "Daily from June to August at 05:00 UTC"),
    (cron(month=12, day_of_week="mon-fri", hour=8), "Weekdays in December at 08:00 UTC"),
    (cron(month=12, day_of_week="mon", hour=8), "Every Monday in December at 08:00 UTC"),
    (cron(year=2026, month=12, day=1, hour=9), "Once at 2026-12-01 09:00 UTC"),
    (cron(year=2026, hour=2), "Daily at 02:00 UTC in 2026"),
    (cron(year=2027, month=2, hour=2), "Daily in February 2027 at 02:00 UTC"),
    (cron(year=2027, minute="*/5"), "Every 5 minutes in 2027 (UTC)"),
    (
        cron(year=2027, month=2, day_of_week="mon", minute=59, timezone=BERLIN),
        "Hourly at :59 on Mondays in February 2027 (Europe/Berlin)",
    ),
    # Zones are always named for clock times.
    (cron(hour=2, timezone=PLUS_TWO), "Daily at 02:00 UTC+02:00"),
    (cron(hour=2, timezone=timezone(-timedelta(hours=5, minutes=30))), "Daily at 02:00 UTC-05:30"),
    (cron(hour=2, timezone=timezone(timedelta(0))), "Daily at 02:00 UTC"),
    (cron(hour=2, timezone=ZoneInfo("UTC")), "Daily at 02:00 UTC"),
    (cron(hour=2, timezone=NEW_YORK), "Daily at 02:00 America/New_York"),
    # Irregular cron: the fields themselves, crontab order, weekday names not numbers.
    (cron(minute="*/7", hour="1-5", timezone=BERLIN), "Cron: minute=*/7, hour=1-5 (Europe/Berlin)"),
    (crontab("*/7 1-5 * * 0"), "Cron: minute=*/7, hour=1-5, day_of_week=mon (UTC)"),
    (cron(week="*/2", hour=3), "Cron: minute=0, hour=3, week=*/2 (UTC)"),
    (cron(day="1-7", day_of_week="mon"), "Cron: minute=0, hour=0, day=1-7, day_of_week=mon (UTC)"),
    (cron(day="*/2"), "Cron: minute=0, hour=0, day=*/2 (UTC)"),
    (cron(second=30), "Cron: second=30 (UTC)"),
    (cron(year="2026-2027"), "Cron: minute=0, hour=0, day=1, month=1, year=2026-2027 (UTC)"),
    (cron(second="*/10", minute=0, hour=2), "Cron: second=*/10, minute=0, hour=2 (UTC)"),
    (cron(hour="6,18", minute=0, second="0,30"), "Cron: second=0,30, minute=0, hour=6,18 (UTC)"),
    # Fields left out below the last one given are "*" (every minute of hours 6 and 18 here).
    (cron(hour="6,18", second="0,30"), "Cron: second=0,30, hour=6,18 (UTC)"),
    # Intervals: no zone, absolute time.
    (IntervalTrigger(days=1), "Every day"),
    (IntervalTrigger(days=2), "Every 2 days"),
    (IntervalTrigger(days=1, hours=12), "Every 1 day 12 hours"),
    (IntervalTrigger(weeks=1), "Every week"),
    (IntervalTrigger(weeks=2), "Every 2 weeks"),
    (IntervalTrigger(days=8), "Every 8 days"),
    (IntervalTrigger(hours=1), "Every hour"),
    (IntervalTrigger(minutes=1), "Every minute"),
    (IntervalTrigger(minutes=90), "Every 90 minutes"),
    (IntervalTrigger(hours=2, minutes=30), "Every 2 hours 30 minutes"),
    (IntervalTrigger(seconds=1), "Every second"),
    (IntervalTrigger(seconds=90), "Every 90 seconds"),
    (IntervalTrigger(seconds=150), "Every 2 minutes 30 seconds"),
    (IntervalTrigger(seconds=0.5), "Every 0.5 seconds"),
    (IntervalTrigger(minutes=5, jitter=30), "Every 5 minutes"),
    # One-shot.
    (DateTrigger(at(2026, 12, 1, 9)), "Once at 2026-12-01 09:00 UTC"),
    (
        DateTrigger(at(2026, 12, 1, 9, 0, 30, tz=BERLIN)),
        "Once at 2026-12-01 09:00:30 Europe/Berlin",
    ),
    # Calendar intervals.
    (CalendarIntervalTrigger(months=2, hour=4, timezone="UTC"), "Every 2 months at 04:00 UTC"),
    (CalendarIntervalTrigger(months=1, hour=4, timezone="UTC"), "Every month at 04:00 UTC"),
    (
        CalendarIntervalTrigger(days=1, hour=4, minute=30, timezone=BERLIN),
        "Every day at 04:30 Europe/Berlin",
    ),
    (
        CalendarIntervalTrigger(years=1, months=6, timezone="UTC"),
        "Every 1 year 6 months at 00:00 UTC",
    ),
    (
        CalendarIntervalTrigger(weeks=2, hour=4, jitter=60, timezone="UTC"),
        "Every 2 weeks at 04:00 UTC",
    ),
    # Combinations.
    (
        AndTrigger([cron(hour=2), cron(day_of_week="mon", hour="*")]),
        "Daily at 02:00 UTC and hourly at :00 on Mondays (UTC)",
    ),
    (OrTrigger([cron(hour=2), IntervalTrigger(hours=6)]), "Daily at 02:00 UTC or every 6 hours"),
    (
        OrTrigger([AndTrigger([cron(hour=2), cron(day=1)]), DateTrigger(at(2026, 1, 1))]),
        "(Daily at 02:00 UTC and monthly on day 1 at 00:00 UTC) or once at 2026-01-01 00:00 UTC",
    ),
    # Jitter never shows.
    (cron(hour=2, jitter=300), "Daily at 02:00 UTC"),
]


@pytest.mark.parametrize(("trigger", "text"), TEXTS, ids=[t for _, t in TEXTS])
def test_describe(trigger: object, text: str) -> None:
    assert describe(trigger) == text


@pytest.mark.parametrize(("trigger", "text"), TEXTS[:12], ids=[t for _, t in TEXTS[:12]])
def test_describe_survives_a_pickle_round_trip(trigger: object, text: str) -> None:
    """Job stores hand back triggers rebuilt by ``__setstate__``; the words must not change."""
    assert describe(pickle.loads(pickle.dumps(trigger))) == text


class Broken:
    def __str__(self) -> str:
        raise RuntimeError("no")


class Odd(CronTrigger):
    """A cron whose fields are not what anyone expects."""

    def __init__(self) -> None:
        self.fields = [object(), 3]  # type: ignore[list-item]
        self.timezone = UTC


@pytest.mark.parametrize(
    ("trigger", "text"),
    [(None, "unknown"), (Broken(), "unknown"), (42, "42"), ("multi\nline", "multi line")],
)
def test_describe_never_raises(trigger: object, text: str) -> None:
    assert describe(trigger) == text


def test_describe_of_a_broken_cron_is_still_text() -> None:
    text = describe(Odd())
    assert isinstance(text, str) and text and "\n" not in text


def test_describe_keeps_labels_short() -> None:
    many = ",".join(str(m) for m in range(0, 60, 2))
    text = describe(OrTrigger([cron(minute=many, hour=h) for h in range(0, 24, 3)]))
    assert len(text) <= 160 and text.endswith("...")


@pytest.mark.parametrize(
    ("trigger", "kind"),
    [
        (cron(hour=2), "cron"),
        (IntervalTrigger(hours=1), "interval"),
        (DateTrigger(at(2026, 1, 1)), "date"),
        (AndTrigger([cron(hour=2)]), "and"),
        (OrTrigger([cron(hour=2)]), "or"),
        (CalendarIntervalTrigger(days=1, timezone="UTC"), "other"),
        (None, "other"),
        (object(), "other"),
    ],
)
def test_trigger_kind(trigger: object, kind: str) -> None:
    assert trigger_kind(trigger) == kind


def test_zone_name_without_a_zone() -> None:
    assert zone_name(None) == "local time"
    assert zone_name(timezone(timedelta(hours=5, minutes=45))) == "UTC+05:45"


# --- previous_fire_time: boundaries -------------------------------------------------------

BACKUP = cron(hour=2, minute=0)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(2026, 6, 10, 2), at(2026, 6, 10, 2)),  # exactly at the fire time
        (at(2026, 6, 10, 1, 59, 59, 999999), at(2026, 6, 9, 2)),  # just before it
        (at(2026, 6, 10, 2, 0, 0, 1), at(2026, 6, 10, 2)),  # just after it
        (at(2026, 6, 10, 23, 59, 59), at(2026, 6, 10, 2)),
        (at(2026, 6, 10, 4, tz=BERLIN), at(2026, 6, 10, 2)),  # any zone for now
    ],
)
def test_backup_boundaries(now: datetime, expected: datetime) -> None:
    assert previous_fire_time(BACKUP, now) == expected


def test_naive_now_is_utc() -> None:
    assert previous_fire_time(BACKUP, datetime(2026, 6, 10, 3)) == at(2026, 6, 10, 2)


def test_result_is_in_utc() -> None:
    found = previous_fire_time(cron(hour=2, timezone=BERLIN), at(2026, 6, 10, 12))
    assert found is not None and found.tzinfo is UTC
    assert found == at(2026, 6, 10, 0)


def test_left_out_hour_fires_an_hour_late() -> None:
    """APScheduler runs a daily 02:30 at 03:30 CEST on the spring-forward night, not never."""
    half_past_two = cron(hour=2, minute=30, timezone=BERLIN)
    assert previous_fire_time(half_past_two, at(2026, 3, 29, 1, 29)) == at(2026, 3, 28, 1, 30)
    assert previous_fire_time(half_past_two, at(2026, 3, 29, 1, 30)) == at(2026, 3, 29, 1, 30)


def test_repeated_hour_fires_twice() -> None:
    """02:30 happens twice on the fall-back night in Europe/Berlin, and APScheduler fires both."""
    half_past_two = cron(hour=2, minute=30, timezone=BERLIN)
    assert previous_fire_time(half_past_two, at(2026, 10, 25, 1)) == at(2026, 10, 25, 0, 30)
    assert previous_fire_time(half_past_two, at(2026, 10, 25, 2)) == at(2026, 10, 25, 1, 30)


def test_start_and_end_dates() -> None:
    bounded = cron(hour=2, start_date=at(2026, 6, 1), end_date=at(2026, 6, 5, 12))
    assert previous_fire_time(bounded, at(2026, 5, 31, 23)) is None
    assert previous_fire_time(bounded, at(2026, 6, 1, 2)) == at(2026, 6, 1, 2)
    assert previous_fire_time(bounded, at(2027, 1, 1)) == at(2026, 6, 5, 2)


def test_jitter_is_ignored_and_left_alone() -> None:
    jittery = cron(hour=2, jitter=3600)
    for _ in range(5):
        assert previous_fire_time(jittery, at(2026, 6, 10, 12)) == at(2026, 6, 10, 2)
    assert jittery.jitter == 3600


def test_date_trigger() -> None:
    once = DateTrigger(at(2026, 6, 10, 9))
    assert previous_fire_time(once, at(2026, 6, 10, 8, 59, 59)) is None
    assert previous_fire_time(once, at(2026, 6, 10, 9)) == at(2026, 6, 10, 9)
    assert previous_fire_time(once, at(2030, 1, 1)) == at(2026, 6, 10, 9)


def test_interval_trigger() -> None:
    start = at(2026, 3, 28, 0, 0, 0, 123456, tz=BERLIN)
    every = IntervalTrigger(hours=6, start_date=start, end_date=at(2026, 4, 30, tz=BERLIN))
    assert previous_fire_time(every, start - timedelta(microseconds=1)) is None
    assert previous_fire_time(every, start) == start
    # Across the spring-forward night the interval stays 6 real hours: 23, 5, 11, 17 UTC.
    sunday_noon = at(2026, 3, 29, 12, tz=BERLIN)
    assert previous_fire_time(every, sunday_noon) == at(2026, 3, 29, 5, 0, 0, 123456)
    assert previous_fire_time(every, at(2027, 1, 1)) == at(2026, 4, 29, 17, 0, 0, 123456)
    seven = IntervalTrigger(seconds=7, start_date=at(2016, 1, 1))
    found = previous_fire_time(seven, at(2026, 1, 1))
    assert found is not None and at(2026, 1, 1) - timedelta(seconds=7) < found <= at(2026, 1, 1)
    assert seven.get_next_fire_time(found - timedelta(seconds=7), found) == found


def test_and_and_or() -> None:
    now = at(2026, 6, 1)  # a Monday
    monday_two = AndTrigger([cron(hour=2), cron(day_of_week="mon", hour="*")])
    assert previous_fire_time(monday_two, now) == at(2026, 5, 25, 2)
    friday_13th = AndTrigger([cron(day=13), cron(day_of_week="fri")])
    assert previous_fire_time(friday_13th, now) == at(2026, 3, 13)
    # APScheduler's own AndTrigger loops forever on a date in the past; this must not.
    dated = AndTrigger([cron(hour=2), DateTrigger(at(2026, 5, 1, 2))])
    assert previous_fire_time(dated, now) == at(2026, 5, 1, 2)
    either = OrTrigger([cron(hour=2), DateTrigger(at(2026, 5, 31, 23)), IntervalTrigger(days=9)])
    assert previous_fire_time(either, now) == at(2026, 5, 31, 23)
    assert previous_fire_time(OrTrigger([DateTrigger(at(2027, 1, 1))]), now) is None
    assert previous_fire_time(AndTrigger([]), now) is None


def test_unknown_triggers_give_none() -> None:
    assert previous_fire_time(object(), at(2026, 1, 1)) is None
    assert previous_fire_time(None, at(2026, 1, 1)) is None


# --- previous_fire_time: speed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "now", "expected"),
    [
        (cron(second="*"), at(2026, 6, 1, 12, 0, 0, 500000), at(2026, 6, 1, 12)),
        (cron(year=2016, month=2, day=29, hour=2), at(2026, 6, 1), at(2016, 2, 29, 2)),
        (cron(month=2, day=30), at(2026, 6, 1), None),  # never fires
        (cron(year=2099), at(2026, 6, 1), None),
        (AndTrigger([cron(hour=1), cron(hour=2)]), at(2026, 6, 1), None),  # never agree
        (
            CalendarIntervalTrigger(days=1, timezone="UTC", start_date=date(2016, 1, 1)),
            at(2026, 6, 1, 1),
            at(2026, 6, 1),
        ),
        (
            CalendarIntervalTrigger(months=1, timezone="UTC", start_date=date(1990, 1, 31)),
            at(2026, 6, 1, 1),
            at(2026, 5, 31),
        ),
    ],
)
def test_fast_on_extreme_triggers(
    trigger: object, now: datetime, expected: datetime | None
) -> None:
    started = time.process_time()  # CPU time: other work on the machine does not count
    assert previous_fire_time(trigger, now) == expected
    assert time.process_time() - started < 0.5


# --- previous_fire_time against the oracle -----------------------------------------------

DST_DAYS = [
    (BERLIN, at(2026, 3, 29)),  # spring forward 02:00 -> 03:00
    (BERLIN, at(2026, 10, 25)),  # fall back 03:00 -> 02:00
    (NEW_YORK, at(2026, 3, 8, 5)),
    (NEW_YORK, at(2026, 11, 1, 5)),
]
DST_CRONS = [
    {"hour": 2, "minute": 30},
    {"hour": 2},
    {"hour": 3},
    {"hour": "1-3", "minute": "*/20"},
    {"minute": 30},
    {"minute": "*/7", "hour": "0-4"},
    {"hour": 1, "minute": 59, "second": 59},
    {"second": "*/20", "hour": 2},
]


@pytest.mark.parametrize(("zone", "day"), DST_DAYS, ids=lambda v: str(v))
@pytest.mark.parametrize(
    "fields", DST_CRONS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items())
)
def test_cron_across_dst_matches_oracle(zone: ZoneInfo, day: datetime, fields: dict) -> None:
    trigger = CronTrigger(timezone=zone, **fields)
    for minutes in range(-60, 300, 11):
        for extra in (timedelta(0), timedelta(seconds=1), timedelta(microseconds=-1)):
            now = day + timedelta(minutes=minutes) + extra
            walked = oracle(trigger, now, since=day - timedelta(days=2))
            assert instant(previous_fire_time(trigger, now)) == instant(walked), now


@pytest.mark.parametrize(
    ("fields", "before", "skipped", "after"),
    [
        (
            {"day": 1},
            at(2026, 3, 1, tz=BERLIN),
            at(2026, 4, 1, tz=BERLIN),
            at(2026, 5, 1, tz=BERLIN),
        ),
        (
            {"hour": 0},
            at(2026, 3, 29, tz=BERLIN),
            at(2026, 3, 30, tz=BERLIN),
            at(2026, 3, 31, tz=BERLIN),
        ),
        (
            {"day_of_week": "mon"},
            at(2026, 3, 23, tz=BERLIN),
            at(2026, 3, 30, tz=BERLIN),
            at(2026, 4, 6, tz=BERLIN),
        ),
        (
            {"day": 1},
            at(2026, 10, 1, tz=LORD_HOWE),
            at(2026, 11, 1, tz=LORD_HOWE),
            at(2026, 12, 1, tz=LORD_HOWE),
        ),
        (
            {"month": "*/4"},
            at(2023, 9, 1, tz=LORD_HOWE),
            at(2024, 1, 1, tz=LORD_HOWE),
            at(2024, 5, 1, tz=LORD_HOWE),
        ),
        (  # a whole run: Monday 00:00 to 00:55 after the change on Sunday
            {"day_of_week": "mon-fri", "hour": "*/3", "minute": "*/5"},
            at(2026, 3, 27, 21, 55, tz=BERLIN),
            at(2026, 3, 30, 0, 40, tz=BERLIN),
            at(2026, 3, 30, 3, tz=BERLIN),
        ),
    ],
)
def test_fire_times_the_scheduler_skips_after_dst(
    fields: dict, before: datetime, skipped: datetime, after: datetime
) -> None:
    """APScheduler 3.11 steps over some fires after a DST change; so must the expected run.

    Its step adds the wall-clock difference to the previous fire in UTC, lands an hour (or half
    an hour) late after the spring-forward night and then looks for the next match. A running
    scheduler does not fire at ``skipped``, so reporting it as expected would raise a missed-run
    alert every year that nothing can fix; a search starting after the change does see it.
    """
    trigger = CronTrigger(timezone=before.tzinfo, **fields)
    assert trigger.get_next_fire_time(before, before) == after
    assert trigger.get_next_fire_time(None, skipped - timedelta(minutes=1)) == skipped
    assert previous_fire_time(trigger, skipped + timedelta(minutes=1)) == before
    assert previous_fire_time(trigger, after) == after
    either = OrTrigger([trigger, DateTrigger(before - timedelta(days=400))])
    assert previous_fire_time(either, skipped + timedelta(minutes=1)) == before


@pytest.mark.parametrize(
    "trigger",
    [
        CalendarIntervalTrigger(
            days=1, hour=2, minute=30, timezone=BERLIN, start_date=date(2020, 3, 20)
        ),
        CalendarIntervalTrigger(
            weeks=1,
            days=2,
            hour=2,
            minute=30,
            timezone=BERLIN,
            start_date=date(2021, 3, 20),
            end_date=date(2026, 3, 30),
        ),
        CalendarIntervalTrigger(months=1, hour=4, timezone=BERLIN, start_date=date(2018, 1, 31)),
        CalendarIntervalTrigger(
            months=1, days=1, hour=4, timezone=NEW_YORK, start_date=date(2018, 1, 31)
        ),
        CalendarIntervalTrigger(years=1, timezone="UTC", start_date=date(2016, 2, 29)),
        CalendarIntervalTrigger(
            days=3, hour=23, minute=59, second=59, timezone=NEW_YORK, start_date=date(2024, 1, 1)
        ),
    ],
    ids=repr,
)
def test_calendar_interval_matches_scheduler_walk(trigger: CalendarIntervalTrigger) -> None:
    def walk(now: datetime) -> datetime | None:
        fire, last = trigger.get_next_fire_time(None, now), None
        while fire is not None and fire.astimezone(UTC) <= now:
            last, fire = fire, trigger.get_next_fire_time(fire, now)
        return last

    for hours in range(0, 24 * 800, 131):
        now = at(2025, 1, 1) + timedelta(hours=hours)
        assert instant(previous_fire_time(trigger, now)) == instant(walk(now)), now
    assert previous_fire_time(trigger, at(2010, 1, 1)) is None


@pytest.mark.parametrize(
    "trigger",
    [
        IntervalTrigger(hours=6, start_date=at(2025, 9, 1, 0, 0, 0, 123456, tz=BERLIN)),
        IntervalTrigger(
            seconds=7, start_date=at(2026, 3, 29, tz=BERLIN), end_date=at(2026, 3, 29, 5, tz=BERLIN)
        ),
        IntervalTrigger(days=1, start_date=at(2026, 3, 1, 2, 30, tz=BERLIN)),
        IntervalTrigger(minutes=90, start_date=at(2026, 11, 1, 1, 15, tz=NEW_YORK)),
    ],
    ids=repr,
)
def test_interval_matches_oracle(trigger: IntervalTrigger) -> None:
    for minutes in range(0, 60 * 24 * 3, 97):
        for now in (at(2026, 3, 28), at(2026, 10, 31)):
            now += timedelta(minutes=minutes)
            walked = oracle(trigger, now, since=trigger.start_date)
            assert instant(previous_fire_time(trigger, now)) == instant(walked), now


def test_or_of_crons_matches_oracle() -> None:
    trigger = OrTrigger(
        [cron(hour=2, timezone=BERLIN), cron(day_of_week="sun", hour="*/5", minute=30)]
    )
    for hours in range(0, 24 * 20, 5):
        now = at(2026, 10, 20) + timedelta(hours=hours, seconds=hours * 7)
        walked = oracle(trigger, now, since=at(2026, 10, 1))
        assert instant(previous_fire_time(trigger, now)) == instant(walked), now


def test_and_of_crons_matches_oracle() -> None:
    # Only the first fire through APScheduler's And: with a previous fire time it can spin forever.
    trigger = AndTrigger(
        [
            cron(hour="*/2", minute="*/15", timezone=BERLIN),
            cron(minute="0,45", day_of_week="mon-fri", timezone=NEW_YORK),
        ]
    )
    for hours in range(0, 24 * 20, 7):
        now = at(2026, 10, 20) + timedelta(hours=hours, seconds=hours * 13)
        found = previous_fire_time(trigger, now)
        assert found is not None and found <= now
        assert trigger.get_next_fire_time(None, found) == found
        following = trigger.get_next_fire_time(None, found + timedelta(seconds=1))
        assert following is not None and following > now


# --- hypothesis: random cron fields -------------------------------------------------------

ZONES = [UTC, BERLIN, NEW_YORK, PLUS_TWO, LORD_HOWE]
FIELDS = {
    "second": ["0", "30", "*/30", "0,15"],
    "minute": ["*", "0", "*/15", "*/7", "15,45", "10-20", "59", "5-55/25"],
    "hour": ["*", "2", "*/3", "*/5", "9-17", "1,13", "0-4", "3", "23"],
    "day": ["*", "1", "last", "15", "1-7", "2nd tue", "31", "29", "last fri", "1,15"],
    "month": ["*", "2", "jan-mar", "*/4", "3,10", "11"],
    "day_of_week": ["*", "mon", "mon-fri", "sat,sun", "2", "0-5"],
}


@st.composite
def cron_fields(draw: st.DrawFn) -> dict[str, object]:
    chosen: dict[str, object] = {"timezone": draw(st.sampled_from(ZONES))}
    for name, options in FIELDS.items():
        if draw(st.booleans()):
            chosen[name] = draw(st.sampled_from(options))
    return chosen


TRANSITIONS = [  # DST changes of the zones above, in UTC
    at(2026, 3, 29, 1), at(2026, 10, 25, 1), at(2026, 3, 8, 7), at(2026, 11, 1, 6),
    at(2026, 4, 4, 15), at(2026, 10, 3, 15, 30),
]  # fmt: skip
moments = st.one_of(
    st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    st.builds(
        lambda base, seconds, micro: base + timedelta(seconds=seconds, microseconds=micro),
        st.sampled_from(TRANSITIONS),
        st.integers(-4 * 3600, 4 * 86400),  # DST skips can reach days past the change
        st.sampled_from([0, 0, 1, -1]),
    ),
)


@settings(max_examples=200, deadline=None)
@given(fields=cron_fields(), now=moments)
def test_random_crons(fields: dict[str, object], now: datetime) -> None:
    """Text is one short line; the fire time agrees with the walk, and with its definition.

    (Walking is too slow for an every-30-seconds cron that only runs in February, so the answer
    is also checked directly: the scheduler's step from it goes past ``now``, and its step from
    the answer just before lands on it.)
    """
    trigger = CronTrigger(**fields)  # type: ignore[arg-type]
    text = describe(trigger)
    assert text and "\n" not in text and len(text) <= 160
    assert not text.startswith(("cron[", "<"))  # a phrase or the field listing, never repr
    found = previous_fire_time(trigger, now)
    if found is None:  # nothing since 1971 (the end date only stops a never-firing search)
        stopping = CronTrigger(**fields, end_date=now + timedelta(days=2))  # type: ignore[arg-type]
        first = stopping.get_next_fire_time(None, at(1971, 1, 1))
        assert first is None or first > now
        return
    with contextlib.suppress(TooFar):  # the walk, when it is short enough
        assert instant(found) == instant(oracle(trigger, now, budget=500))  # 400 days back
    assert found <= now
    local = found.astimezone(trigger.timezone)  # as the scheduler holds it
    following = trigger.get_next_fire_time(local, local)
    assert following is None or following > now
    before = previous_fire_time(trigger, found - timedelta(microseconds=1))  # UTC arithmetic
    if before is None:
        assert instant(trigger.get_next_fire_time(None, at(1971, 1, 1))) == instant(found)
    else:
        local = before.astimezone(trigger.timezone)
        assert instant(trigger.get_next_fire_time(local, local)) == instant(found)
