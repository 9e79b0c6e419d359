"""Validation of what came out: every field of a decoded trigger checked, so code that later
formats or walks it does not trip over hostile values.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Final

from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron import expressions as cron_expressions
from apscheduler.triggers.cron import fields as cron_fields
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.sidecar.decode.allowlist import _REAL_CRON_PART
from exporter.sidecar.decode.model import _MAX_TRIGGER_NESTING
from exporter.sidecar.decode.pickle_scan import reject as _reject
from exporter.sidecar.decode.triggers import (
    _EXPRESSION_ATTRIBUTES,
    _FIELD_ATTRIBUTES,
    _SafeAndTrigger,
    _SafeOrTrigger,
)
from exporter.sidecar.decode.zones import _plain_zone

try:  # APScheduler 3.11+ only; 3.10 writers never store it.
    from apscheduler.triggers.calendarinterval import (
        CalendarIntervalTrigger as _CalendarIntervalTrigger,
    )
except ImportError:  # pragma: no cover - depends on the installed APScheduler
    _CalendarIntervalTrigger = None


def _is_aware(value: object) -> bool:
    return type(value) is datetime and value.utcoffset() is not None


def _check_optional_aware(value: object, what: str) -> None:
    if value is not None and not _is_aware(value):
        _reject(f"trigger {what} is not an aware datetime")


def _check_jitter(value: object) -> None:
    if value is not None and not _is_seconds(value):
        _reject("trigger jitter is not a number of seconds")


def _is_seconds(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def _optional_int(value: object) -> bool:
    return value is None or type(value) is int


def _adopt(obj: Any, real: type, attributes: frozenset[str]) -> bool:
    """Give a decoded cron part of kind ``real`` (the real class or its stand-in) with
    exactly ``attributes`` its real class. False if it is anything else."""
    if _REAL_CRON_PART.get(type(obj)) is not real or vars(obj).keys() != attributes:
        return False
    obj.__class__ = real
    return True


_RANGES: Final = frozenset(
    {
        cron_expressions.RangeExpression,
        cron_expressions.MonthRangeExpression,
        cron_expressions.WeekdayRangeExpression,
    }
)


def _check_expression(expr: Any, name: str, compilers: list[type]) -> None:
    """Type checks plus the bounds of APScheduler's ``validate_range``, inlined (hot path)."""
    real = _REAL_CRON_PART.get(type(expr))
    if real not in compilers or not _adopt(expr, real, _EXPRESSION_ATTRIBUTES[real]):
        _reject(f"cron field {name} has an expression of the wrong kind")
    for value in vars(expr).values():
        if value is not None and type(value) is not int:
            _reject(f"cron field {name} has a non-integer expression")
    low, high = cron_fields.MIN_VALUES[name], cron_fields.MAX_VALUES[name]
    step = expr.step
    if step is not None and not 0 < step <= high - low:
        _reject(f"cron field {name} has an invalid step")
    if real in _RANGES:
        first, last = expr.first, expr.last
        if (
            first is None
            or first < low
            or (last is not None and not first <= last <= high)
            or (step and step > (last or high) - first)
        ):
            _reject(f"cron field {name} has an invalid range")
    elif real is cron_expressions.WeekdayPositionExpression and not (
        expr.option_num is not None
        and 0 <= expr.option_num < len(expr.options)
        and expr.weekday is not None
        and 0 <= expr.weekday < 7
    ):
        _reject(f"cron field {name} has an invalid weekday position")


def _check_cron(trigger: Any) -> None:
    trigger.timezone = _plain_zone(trigger.timezone)
    if not isinstance(trigger.timezone, tzinfo):
        _reject("cron trigger has no valid time zone")
    _check_optional_aware(trigger.start_date, "start_date")
    _check_optional_aware(trigger.end_date, "end_date")
    _check_jitter(trigger.jitter)
    fields = trigger.fields
    if type(fields) is not list or len(fields) != len(CronTrigger.FIELD_NAMES):
        _reject("cron trigger does not have its eight fields")
    for name, field in zip(CronTrigger.FIELD_NAMES, fields, strict=True):
        field_class = CronTrigger.FIELDS_MAP[name]
        if not _adopt(field, field_class, _FIELD_ATTRIBUTES) or field.name != name:
            _reject("cron trigger has a misplaced or invalid field")
        expressions = field.expressions
        if type(field.is_default) is not bool or type(expressions) is not list or not expressions:
            _reject(f"cron field {name} is invalid")
        if len(expressions) > 100:
            _reject(f"cron field {name} has too many expressions")
        for expr in expressions:
            _check_expression(expr, name, field_class.COMPILERS)


def _check_interval(trigger: Any) -> None:
    trigger.timezone = _plain_zone(trigger.timezone)
    if not isinstance(trigger.timezone, tzinfo):
        _reject("interval trigger has no valid time zone")
    if type(trigger.interval) is not timedelta or trigger.interval <= timedelta(0):
        _reject("interval trigger has an invalid interval")
    if not _is_aware(trigger.start_date):
        _reject("interval trigger start_date is not an aware datetime")
    _check_optional_aware(trigger.end_date, "end_date")
    _check_jitter(trigger.jitter)


def _check_date(trigger: Any) -> None:
    if not _is_aware(trigger.run_date):
        _reject("date trigger run_date is not an aware datetime")


def _check_calendar_interval(trigger: Any) -> None:
    zone = trigger.timezone = _plain_zone(trigger.timezone)
    if not isinstance(zone, tzinfo):
        _reject("calendar interval trigger has no valid time zone")
    counts = (trigger.years, trigger.months, trigger.weeks, trigger.days)
    if not all(type(c) is int and c >= 0 for c in counts) or not any(counts):
        _reject("calendar interval trigger has an invalid interval")
    if type(trigger._time) is not time:
        _reject("calendar interval trigger has an invalid time of day")
    trigger._time = trigger._time.replace(tzinfo=zone)
    if type(trigger.start_date) is not date:
        _reject("calendar interval trigger has an invalid start_date")
    if trigger.end_date is not None and type(trigger.end_date) is not date:
        _reject("calendar interval trigger has an invalid end_date")
    _check_jitter(trigger.jitter)


def _check_trigger(trigger: object, depth: int = 0) -> None:
    """Reject a trigger APScheduler itself could not have written (wrong types, bad values).

    Also the step that gives stand-ins (And/Or, cron parts) their real classes, now that no
    opcode can reach them any more.
    """
    kind = type(trigger)
    try:
        if kind is CronTrigger:
            _check_cron(trigger)
        elif kind is IntervalTrigger:
            _check_interval(trigger)
        elif kind is DateTrigger:
            _check_date(trigger)
        elif _CalendarIntervalTrigger is not None and kind is _CalendarIntervalTrigger:
            _check_calendar_interval(trigger)
        elif kind in _COMBINING:
            combined: Any = trigger
            children = combined.triggers
            if type(children) is not list or not children or depth >= _MAX_TRIGGER_NESTING:
                _reject("combined trigger is invalid or nested too deeply")
            _check_jitter(combined.jitter)
            for child in children:
                _check_trigger(child, depth + 1)
            combined.__class__ = _COMBINING[kind]
        else:
            _reject("trigger is not an APScheduler trigger from the allowlist")
    except AttributeError:  # a slot never set: state without a required key
        _reject("trigger is incomplete")


_COMBINING: Final[dict[type, type]] = {
    AndTrigger: AndTrigger,
    OrTrigger: OrTrigger,
    _SafeAndTrigger: AndTrigger,
    _SafeOrTrigger: OrTrigger,
}
