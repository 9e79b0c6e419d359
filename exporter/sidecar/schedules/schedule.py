"""What an APScheduler 3 trigger means: its kind and its schedule in words.

The words end up in the ``schedule`` label of ``apscheduler_job_info`` and in the CLI, so they
must be short, on one line, stable from poll to poll and never wrong: a schedule that does not
fit a plain phrase is printed as its cron fields instead of being approximated. Clock times
always name their zone, because a job store is often read from a machine in another zone.

Fire times themselves are walked in ``exporter.sidecar.schedules.fire_times``;
``previous_fire_time`` is re-exported here for callers that want a trigger's meaning from one place.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from exporter.sidecar.schedules.cron_words import clock, cron_text
from exporter.sidecar.schedules.fire_times import _without_jitter, previous_fire_time, trigger_kind
from exporter.sidecar.text import capped, encodable

__all__ = ["describe", "previous_fire_time", "trigger_kind"]

_STARTERS = {"Cron:", "Daily", "Every", "Hourly", "Monthly", "Once", "Weekdays", "Weekends",
             "Weekly", "Yearly"}  # fmt: skip


def describe(trigger: object) -> str:
    """The schedule in words; never raises, since one odd job must not break a whole poll."""
    if trigger is None:
        return "unknown"
    try:
        text = _describe(trigger)
    except Exception:
        text = None
    if not text:
        try:
            text = str(trigger)
        except Exception:
            text = "unknown"
    text = " ".join(text.split())  # a label is one line
    return capped(encodable(text)[0])


# --- describe -----------------------------------------------------------------------------


def _describe(trigger: Any) -> str | None:
    kind = trigger_kind(trigger)
    if kind == "cron":
        return _describe_cron(trigger)
    if kind == "interval":
        return "Every " + _duration(trigger.interval)
    if kind == "date":
        run_date = trigger.run_date
        return f"Once at {run_date:%Y-%m-%d} {clock(run_date.time())} {zone_name(run_date.tzinfo)}"
    if kind in ("and", "or"):
        parts = [
            f"({describe(t)})" if trigger_kind(t) in ("and", "or") else describe(t)
            for t in trigger.triggers
        ]
        parts[1:] = [_lower_first(part) for part in parts[1:]]
        return f" {kind} ".join(parts) or None
    if type(trigger).__name__ == "CalendarIntervalTrigger":
        return _describe_calendar(trigger)
    return None


def _lower_first(text: str) -> str:
    """``Daily at 02:00 UTC and hourly at :00``: our own phrases continue in lower case."""
    first = text.lstrip("(").split(" ", 1)[0]
    if first in _STARTERS:
        return text.replace(first, first.lower(), 1)
    return text


def zone_name(zone: tzinfo | None) -> str:
    """``Europe/Berlin`` for named zones, ``UTC`` or ``UTC+02:00`` for fixed offsets."""
    if zone is None:
        return "local time"
    for attribute in ("key", "zone"):  # ZoneInfo, pytz
        name = getattr(zone, attribute, None)
        if isinstance(name, str) and name:
            return name
    offset = zone.utcoffset(None)
    if offset is None:
        return zone.tzname(None) or str(zone)
    if not offset:
        return "UTC"
    sign, offset = ("-", -offset) if offset < timedelta(0) else ("+", offset)
    minutes, seconds = divmod(int(offset.total_seconds()), 60)
    text = f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return text + (f":{seconds:02d}" if seconds else "")


def _plural(count: int | float, unit: str) -> str:
    return f"{count} {unit}" + ("" if count == 1 else "s")


def _duration(interval: timedelta) -> str:
    """``day``, ``6 hours``, ``90 seconds``, ``1 day 12 hours``: the units that read best."""
    total = interval.total_seconds()
    if total != int(total) or total <= 0:
        return f"{max(total, 0):g} seconds"
    rest = int(total)
    whole = [("week", 604800), ("day", 86400)] if rest >= 86400 else [("hour", 3600)]
    if rest < 7200:
        whole.append(("minute", 60))
    for unit, size in whole:
        if rest % size == 0:
            return unit if rest == size else _plural(rest // size, unit)
    if rest < 120:
        return "second" if rest == 1 else _plural(rest, "second")
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(_plural(count, unit))
    return " ".join(parts)


def _describe_calendar(trigger: Any) -> str:
    """``Every 2 months at 04:00 UTC``; the time of day is read off the first fire time."""
    units = [("year", trigger.years), ("month", trigger.months), ("week", trigger.weeks),
             ("day", trigger.days)]  # fmt: skip
    counted = [(unit, int(n)) for unit, n in units if n]
    if len(counted) == 1 and counted[0][1] == 1:
        when = counted[0][0]
    else:
        when = " ".join(_plural(n, unit) for unit, n in counted)
    zone = trigger.timezone
    first = _without_jitter(trigger).get_next_fire_time(None, datetime.now(zone))
    if first is None:
        return f"Every {when} ({zone_name(zone)})"
    return f"Every {when} at {clock(first.astimezone(zone).time())} {zone_name(zone)}"


def _describe_cron(trigger: Any) -> str:
    """Phrase the cron fields, or list them when no phrase says exactly the same thing."""
    texts = {str(field.name): str(field).strip() for field in trigger.fields}
    zone = zone_name(trigger.timezone)
    return cron_text(texts, zone)
