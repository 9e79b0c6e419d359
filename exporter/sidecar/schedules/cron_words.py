"""Cron fields in words, for :mod:`exporter.sidecar.schedules.schedule`.

A phrase is produced only when it says exactly what the fields say; anything else becomes the
compact field listing (``Cron: minute=*/7, hour=1-5 (Europe/Berlin)``). The fields are read from
their ``str()`` form, which every APScheduler 3 version (and any faithful stand-in) shares, not
from the expression classes behind them.
"""

from __future__ import annotations

import re
from datetime import time

__all__ = ["MONTHS", "WEEKDAYS", "clock", "cron_text", "join_words"]

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
_DOW_NAMES = [d[:3].lower() for d in WEEKDAYS]
_MONTH_NAMES = [m[:3].lower() for m in MONTHS]
_ORDINALS = {"1st": "first", "2nd": "second", "3rd": "third", "4th": "fourth", "5th": "fifth",
             "last": "last"}  # fmt: skip
_LIMITS = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "day": (1, 31),
           "month": (1, 12), "day_of_week": (0, 6)}  # fmt: skip
_FALLBACK_ORDER = ["second", "minute", "hour", "day", "month", "day_of_week", "week", "year"]


def cron_text(texts: dict[str, str], zone: str) -> str:
    """The schedule of cron fields (by field name, as ``str(field)``) in the zone named ``zone``."""
    return _cron_phrase(texts, zone) or _cron_fallback(texts, zone)


def clock(moment: time, seconds: bool = False) -> str:
    """``09:00``, or ``09:00:30`` when seconds matter (or ``seconds`` asks to align a list)."""
    if seconds or moment.second:
        return f"{moment:%H:%M:%S}"
    return f"{moment:%H:%M}"


def join_words(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cron_phrase(texts: dict[str, str], zone: str) -> str | None:
    """A phrase, or None when the fields do not fit one exactly."""
    year = texts.get("year", "*")
    if texts.get("week", "*") != "*" or not (year == "*" or year.isdigit()):
        return None
    seconds, minutes, hours, months, weekdays = (
        _expand(texts.get(name, "*"), name)
        for name in ("second", "minute", "hour", "month", "day_of_week")
    )
    days = _days_of_month(texts.get("day", "*"))
    if not (seconds and minutes and hours and months and weekdays) or days is None:
        return None
    timing = _timing(seconds, minutes, hours, texts.get("hour", "*"), zone)
    day_text, day_number = days
    weekday_set = None if len(weekdays) == 7 else weekdays
    if timing is None or (day_text and weekday_set):
        return None
    phrase, times = timing
    month_set = None if len(months) == 12 else months
    month = months[0] if len(months) == 1 else 0
    if year != "*" and times and len(times) == 1 and month and day_number:
        return f"Once at {year}-{month:02d}-{day_number:02d} {phrase.removeprefix('at ')}"
    in_months = _months_phrase(month_set) if month_set else ""
    on_day = ""
    if day_text and month:  # one month: "January 1", "the last Friday of March"
        name = MONTHS[month - 1]
        on_day = f"{name} {day_number}" if day_number else f"{day_text} of {name}"
        in_months = ""
    in_year = "" if year == "*" else f"in {year}"
    if in_year and in_months and month:  # "in February 2027"
        in_months, in_year = f"{in_months} {year}", ""
    if times:  # clock times: "<days> at <times> <zone>"
        if weekday_set:
            start = _weekdays_prefix(weekday_set, bool(month_set))
        elif day_text:
            start = f"Yearly on {on_day}" if on_day else f"Monthly on {day_text}"
        else:
            start = "Daily"
        return " ".join(part for part in (start, in_months, phrase, in_year) if part)
    # a frequency: "<every ...> [from .. to .. <zone>] [on <days>] [in <months>] [(<zone>)]"
    parts = [phrase, _weekdays_suffix(weekday_set) if weekday_set else ""]
    if day_text:
        parts.append(f"on {on_day}" if on_day else f"on {day_text} of the month")
    text = " ".join(part for part in [*parts, in_months, in_year] if part)
    if text != phrase and not phrase.endswith(zone):
        text += f" ({zone})"
    return text


def _timing(
    seconds: list[int], minutes: list[int], hours: list[int], hour_text: str, zone: str
) -> tuple[str, list[time] | None] | None:
    """The time-of-day part: ``at 06:00 and 18:00 UTC`` (with the times), or a frequency.

    A frequency covers all hours, every k-th hour from midnight (``Every 2 hours at :00``), or
    names its window (``Every 15 minutes from 09:00 to 17:45 UTC``).
    """
    step = re.fullmatch(r"\*/(\d+)", hour_text)
    hourly_cycle = step is not None and 24 % int(step.group(1)) == 0
    if len(seconds) == 1 and len(minutes) * len(hours) <= 6 and not hourly_cycle:
        times = [time(h, m, seconds[0]) for h in hours for m in minutes]
        shown = [clock(t, seconds=bool(seconds[0])) for t in times]
        return f"at {join_words(shown)} {zone}", times
    every_second, every_minute = _cycle(seconds, 60), _cycle(minutes, 60)
    if len(seconds) > 1 and every_second and len(minutes) == 60:
        phrase = "Every second" if every_second == 1 else f"Every {every_second} seconds"
        first, last = time(hours[0], 0, seconds[0]), time(hours[-1], 59, seconds[-1])
        every_hour = 1
    elif len(seconds) == 1 and len(minutes) > 1 and every_minute and not seconds[0]:
        phrase = "Every minute" if every_minute == 1 else f"Every {every_minute} minutes"
        first, last = time(hours[0], minutes[0]), time(hours[-1], minutes[-1])
        every_hour = 1
    elif len(seconds) == 1 and len(minutes) <= 4 and _progression(hours):
        every_hour = _progression(hours) or 1
        marks = [f":{m:02d}" + (f":{seconds[0]:02d}" if seconds[0] else "") for m in minutes]
        phrase = (
            f"{'Hourly' if every_hour == 1 else f'Every {every_hour} hours'} at {join_words(marks)}"
        )
        first = time(hours[0], minutes[0], seconds[0])
        last = time(hours[-1], minutes[-1], seconds[0])
    else:
        return None
    if _cycle(hours, 24) == every_hour:
        return phrase, None
    if _progression(hours) != every_hour:
        return None
    precise = len(seconds) > 1
    return f"{phrase} from {clock(first, precise)} to {clock(last, precise)} {zone}", None


def _cycle(values: list[int], size: int) -> int | None:
    """The step ``k`` if ``values`` is exactly ``0, k, 2k, ...`` and ``k`` divides ``size``."""
    every = values[1] - values[0] if len(values) > 1 else size
    if size % every or values != list(range(0, size, every)):
        return None
    return every


def _progression(values: list[int]) -> int | None:
    """The common difference of an arithmetic progression (1 for a single value), else None."""
    if len(values) == 1:
        return 1
    every = values[1] - values[0]
    return every if values == list(range(values[0], values[-1] + 1, every)) else None


def _expand(text: str, name: str) -> list[int] | None:
    """The sorted values a numeric cron field allows, or None if it uses anything else."""
    low, high = _LIMITS[name]
    names = {"month": _MONTH_NAMES, "day_of_week": _DOW_NAMES}.get(name, [])
    values: set[int] = set()
    start: int | None
    stop: int | None
    for token in text.lower().split(","):
        match = re.fullmatch(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?", token.strip())
        if not match:
            return None
        first, last, step = match.groups()
        if first == "*":
            if last:
                return None
            start, stop = low, high
        else:
            start, stop = _number(first, names, name), _number(last or first, names, name)
            if step and not last:
                stop = high
        if start is None or stop is None or (step and not int(step)):
            return None
        values.update(range(start, stop + 1, int(step or 1)))
    return sorted(v for v in values if low <= v <= high) or None


def _number(token: str, names: list[str], field: str) -> int | None:
    if token.isdigit():
        return int(token)
    if token in names:
        return names.index(token) + (1 if field == "month" else 0)
    return None


def _days_of_month(text: str) -> tuple[str | None, int | None] | None:
    """``("day 1", 1)``, ``("the last day", None)``, ``(None, None)`` for every day; None if odd."""
    found: list[int] = []
    specials = []
    for token in text.lower().split(","):
        token = token.strip()
        position = re.fullmatch(r"(1st|2nd|3rd|4th|5th|last) +(\w+)", token)
        if token == "last":
            specials.append("the last day")
        elif position and position.group(2) in _DOW_NAMES:
            weekday = WEEKDAYS[_DOW_NAMES.index(position.group(2))]
            specials.append(f"the {_ORDINALS[position.group(1)]} {weekday}")
        else:
            expanded = _expand(token, "day")
            if expanded is None:
                return None
            found.extend(expanded)
    numbers = sorted(set(found))
    if len(numbers) == 31:
        return (None, None) if not specials else None
    if not numbers:
        return " and ".join(specials), None
    if len(numbers) == 1:
        listed = f"day {numbers[0]}"
    elif len(numbers) >= 3 and _progression(numbers) == 1:
        listed = f"days {numbers[0]} to {numbers[-1]}"
    elif len(numbers) <= 6:
        listed = "days " + join_words([str(n) for n in numbers])
    else:
        return None
    single = numbers[0] if len(numbers) == 1 and not specials else None
    return " and ".join([listed, *specials]), single


def _months_phrase(months: list[int]) -> str:
    if len(months) >= 3 and _progression(months) == 1:
        return f"from {MONTHS[months[0] - 1]} to {MONTHS[months[-1] - 1]}"
    if len(months) <= 2:
        return "in " + join_words([MONTHS[m - 1] for m in months])
    return "in " + join_words([MONTHS[m - 1][:3] for m in months])


def _weekdays_prefix(weekdays: list[int], restricted: bool) -> str:
    """``Weekdays``, ``Weekly on Monday``, ``Every Monday and Thursday``, ``Daily except Sunday``.

    ``restricted``: months are named after it, so a single day reads ``Every Monday``.
    """
    if weekdays == [0, 1, 2, 3, 4]:
        return "Weekdays"
    if weekdays == [5, 6]:
        return "Weekends"
    if len(weekdays) == 6:
        return "Daily except " + WEEKDAYS[({*range(7)} - {*weekdays}).pop()]
    if len(weekdays) == 1 and not restricted:
        return f"Weekly on {WEEKDAYS[weekdays[0]]}"
    return "Every " + join_words([WEEKDAYS[d] for d in weekdays])


def _weekdays_suffix(weekdays: list[int]) -> str:
    if weekdays == [0, 1, 2, 3, 4]:
        return "on weekdays"
    if weekdays == [5, 6]:
        return "on weekends"
    if len(weekdays) == 6:
        return "except on " + WEEKDAYS[({*range(7)} - {*weekdays}).pop()] + "s"
    return "on " + join_words([WEEKDAYS[d] + "s" for d in weekdays])


def _cron_fallback(texts: dict[str, str], zone: str) -> str:
    """``Cron: minute=*/7, hour=1-5 (Europe/Berlin)``: the constrained fields, crontab order.

    Weekday numbers are printed as names: APScheduler counts from Monday=0, crontab from
    Sunday=0, and a number would be read the crontab way.
    """
    parts = []
    for name in _FALLBACK_ORDER:
        value = texts.get(name, "*")
        if value == "*" or (name == "second" and value == "0"):
            continue
        if name == "day_of_week":
            value = re.sub(r"(?<![/\d])[0-6](?!\d)", lambda m: _DOW_NAMES[int(m[0])], value)
        parts.append(f"{name}={value}")
    return f"Cron: {', '.join(parts) or 'every second'} ({zone})"
