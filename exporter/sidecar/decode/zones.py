"""Dates, times and zones: zoneinfo and pytz without pytz, every field of a pickled date checked."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Final, NoReturn
from zoneinfo import ZoneInfo

from exporter.sidecar.decode.pickle_scan import reject as _reject
from exporter.sidecar.decode.placeholders import _Constructor, _Placeholder

try:  # APScheduler 3.11+ only; 3.10 writers never store it.
    from apscheduler.triggers.calendarinterval import (
        CalendarIntervalTrigger as _CalendarIntervalTrigger,
    )
except ImportError:  # pragma: no cover - depends on the installed APScheduler
    _CalendarIntervalTrigger = None


def _zone(key: object) -> ZoneInfo:
    """Look up an IANA zone; ZoneInfo validates the key (no paths outside the zone database)."""
    if type(key) is not str or not key or len(key) > 255:
        _reject("job_state names an invalid time zone")
    try:
        return ZoneInfo(key)
    except Exception:
        _reject("job_state names a time zone unknown to this system")


def _zoneinfo_unpickle(key: object, from_cache: object = 1) -> ZoneInfo:
    """Stand-in for ``ZoneInfo._unpickle``; always uses the shared cache (same zone, cheaper)."""
    return _zone(key)


_ZONEINFO_UNPICKLE: Final = _Constructor(_zoneinfo_unpickle)


def _getattr(obj: object, name: object, *default: object) -> object:
    """Stand-in for ``builtins.getattr``.

    ZoneInfo pickles as ``getattr(ZoneInfo, "_unpickle")(key, 1)``, which is the only lookup
    real job states need. A general getattr walks from any function to ``__globals__`` and
    ``__builtins__``, i.e. to arbitrary code, so every other lookup is answered with an inert
    placeholder without being performed (a pickled bound method in ``args`` still decodes).
    """
    if obj is ZoneInfo and name == "_unpickle":
        return _ZONEINFO_UNPICKLE
    return _Placeholder()


def _latin1_encode(text: object, encoding: object = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol 2 pickles bytes as ``encode(text, "latin1")``.

    Any other codec is refused; some (zlib, bz2) would turn a small payload into a large one.
    """
    if type(text) is not str or encoding != "latin1":
        _reject("job_state uses a codec outside the allowlist")
    return text.encode("latin-1")


class _PytzInstant(tzinfo):
    """What a pickled pytz ``DstTzInfo`` means: one zone *and* the offset in force.

    pytz attaches a separate tzinfo per offset (CET, CEST, LMT) to each datetime. Keeping the
    offset until the datetime is built lets :func:`_make_datetime` convert to the instant the
    writer meant, including the repeated hour at the end of DST; everywhere else (a trigger's
    ``timezone``) it is replaced by the plain :class:`ZoneInfo`. The attribute is called
    ``zone`` like pytz's, which APScheduler's own ``astimezone`` recognises.
    """

    __slots__ = ("zone", "zoneinfo", "_offset", "_dst", "_name")

    def __init__(self, zone: str, zi: ZoneInfo, offset: timedelta, dst: timedelta, name: str):
        self.zone = zone
        self.zoneinfo = zi
        self._offset = offset
        self._dst = dst
        self._name = name

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return self._offset

    def dst(self, dt: datetime | None) -> timedelta:
        return self._dst

    def tzname(self, dt: datetime | None) -> str:
        return self._name

    def __setstate__(self, state: object) -> NoReturn:
        _reject("job_state tries to modify a time zone")

    def __repr__(self) -> str:
        return f"<pytz zone {self.zone} {self._name}>"


def _seconds(value: object) -> timedelta:
    if type(value) is not int or abs(value) >= 86400:
        _reject("job_state has an invalid pytz offset")
    return timedelta(seconds=value)


def _pytz_p(zone: object, *rest: object) -> tzinfo:
    """Stand-in for ``pytz._p(zone[, utcoffset, dst, tzname])``, pytz's unpickler."""
    zi = _zone(zone)
    if not rest:  # StaticTzInfo: one offset, the zone itself is exact.
        return zi
    if len(rest) != 3 or type(rest[2]) is not str or len(rest[2]) > 64:
        _reject("job_state has an invalid pytz zone")
    return _PytzInstant(str(zone), zi, _seconds(rest[0]), _seconds(rest[1]), rest[2])


def _pytz_utc() -> timezone:
    """Stand-in for ``pytz._UTC()``."""
    return UTC


def _pytz_fixed_offset(minutes: object, *ignored: object) -> timezone:
    """Stand-in for ``pytz.FixedOffset(minutes)`` (pytz too returns UTC for 0)."""
    if type(minutes) is not int or abs(minutes) >= 1440:
        _reject("job_state has an invalid fixed offset")
    return UTC if minutes == 0 else timezone(timedelta(minutes=minutes))


def _impossible() -> NoReturn:
    _reject("job_state has an impossible date or time")


def _make_datetime(*args: Any) -> datetime:
    """Build a datetime; one carrying a pytz offset becomes the same instant in ZoneInfo.

    Pickles give the fields as packed bytes, and CPython's constructor checks only the month
    of those: year 0, 31 February or hour 255 would come out as a datetime (and become a
    schedule such as "Once at 2030-02-31"). Building it again from its fields checks them all.
    """
    value = datetime(*args)
    if args and type(args[0]) is bytes:
        try:
            datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                     value.microsecond, fold=value.fold)  # fmt: skip
        except ValueError:
            _impossible()
    tz = value.tzinfo
    if type(tz) is _PytzInstant:
        value = value.replace(tzinfo=timezone(tz._offset)).astimezone(tz.zoneinfo)
    return value


def _make_date(*args: Any) -> date:
    """Build a date, with every field checked (see :func:`_make_datetime`)."""
    value = date(*args)
    if args and type(args[0]) is bytes:
        try:
            date(value.year, value.month, value.day)
        except ValueError:
            _impossible()
    return value


def _make_time(*args: Any) -> time:
    """Build a time of day, with every field checked (see :func:`_make_datetime`)."""
    value = time(*args)
    if args and type(args[0]) is bytes:
        try:
            time(value.hour, value.minute, value.second, value.microsecond, fold=value.fold)
        except ValueError:
            _impossible()
    return value


def _plain_zone(tz: object) -> object:
    return tz.zoneinfo if type(tz) is _PytzInstant else tz
