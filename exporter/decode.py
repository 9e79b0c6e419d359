"""Safe decoding of APScheduler 3's ``job_state`` column.

The exporter reads a database it does not control. ``job_state`` is a pickle, and unpickling
untrusted bytes with the stock unpickler runs whatever callable the bytes name, so this module
never does that. Instead:

* ``find_class`` answers from a fixed allowlist (datetime types, zoneinfo, pytz stand-ins,
  APScheduler's trigger classes). Every other global becomes an inert placeholder class: an
  app object stored in a job's ``args`` still decodes, while ``os.system`` and friends are never
  looked up, let alone called.
* The callables the allowlist does hand out are our own wrappers with narrow contracts
  (``getattr`` only for ``ZoneInfo._unpickle``, ``_codecs.encode`` only for latin-1 text, pytz
  constructors that build standard-library zones), so pytz need not be installed.
* ``AndTrigger``/``OrTrigger`` import the classes named in their state from ``__setstate__``,
  where ``find_class`` never looks; stand-ins check those names against the same allowlist.
* Classes without a ``__setstate__`` of their own are handed out as subclasses that have one:
  the pickle ``BUILD`` opcode applied to a class object would otherwise ``setattr`` attacker
  data onto the real APScheduler class for the whole process.
* A pre-scan of the opcodes (:mod:`exporter.pickle_scan`) rejects the two inputs the C
  unpickler handles badly: memo indices that make it allocate (and zero) gigabytes, and tuples
  nested deeply enough to crash the interpreter when hashed.
* And/Or triggers are measured on their pickled state before any is built (depth, children,
  total), since a pickle can reference one shared subtree many times.
* The decoded trigger is validated field by field, so code that later formats or evaluates it
  does not trip over hostile values.

The public surface is :class:`DecodedJob`, :class:`UndecodableJob` and
:func:`decode_job_state`. See ``docs/decoding.md``.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Final, NoReturn
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron import expressions as cron_expressions
from apscheduler.triggers.cron import fields as cron_fields
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.pickle_scan import Rejected as _Reject
from exporter.pickle_scan import prescan
from exporter.pickle_scan import reject as _reject

try:  # APScheduler 3.11+ only; 3.10 writers never store it.
    from apscheduler.triggers.calendarinterval import (
        CalendarIntervalTrigger as _CalendarIntervalTrigger,
    )
except ImportError:  # pragma: no cover - depends on the installed APScheduler
    _CalendarIntervalTrigger = None

__all__ = ["MAX_JOB_STATE_BYTES", "DecodedJob", "UndecodableJob", "decode_job_state"]

#: Real job states are a few kilobytes; anything this large is not worth the memory it costs.
MAX_JOB_STATE_BYTES: Final = 1 << 20

# And/Or triggers nest their children by recursion; real schedules use two or three levels and
# a handful of children. Restoring builds one trigger per child *reference*, and a pickle can
# reference one shared subtree many times (memo), so a 1 KB row can describe 10^8 triggers: the
# bounds below are checked on the pickled state before anything is built.
_MAX_TRIGGER_NESTING: Final = 8  # combined triggers inside each other
_MAX_TRIGGER_CHILDREN: Final = 100  # children of one combined trigger
_MAX_TRIGGER_NODES: Final = 1000  # triggers built for And/Or in one row, leaves included

# Defaults of APScheduler's own ``job_defaults``, used when a field is absent from a row.
_DEFAULT_EXECUTOR: Final = "default"
_DEFAULT_MISFIRE_GRACE_TIME: Final = 1.0
_DEFAULT_COALESCE: Final = True
_DEFAULT_MAX_INSTANCES: Final = 1


@dataclass(frozen=True, slots=True)
class DecodedJob:
    """The parts of a stored job the exporter reports on; the job's code is never imported."""

    id: str
    name: str | None
    func: str | None  # the "module:qualname" text, or None if not a string
    trigger: BaseTrigger | None  # a real apscheduler.triggers.* instance built from the allowlist
    executor: str  # "default" when absent
    misfire_grace_time: float | None  # seconds; None means unlimited
    coalesce: bool
    max_instances: int
    next_run_time: datetime | None  # aware
    placeholders: int  # objects in args/kwargs replaced by inert placeholders


class UndecodableJob(Exception):
    """A ``job_state`` that cannot be decoded safely.

    ``str(exc)`` is one short line saying why. It is written by this module, never copied from
    the payload, so it is safe to log and to show on the status page.
    """

    def __init__(self, reason: str) -> None:
        reason = " ".join(reason.split())[:200] or "undecodable job_state"
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Placeholders for everything outside the allowlist
# --------------------------------------------------------------------------------------------


class _Placeholder:
    """Stands in for any object whose class is not on the allowlist.

    ``find_class`` returns this class itself for every unknown global, so the pickle opcodes
    that build objects (REDUCE, NEWOBJ, INST/OBJ) create an instance and keep nothing: the
    arguments meant for ``os.system`` or an app's constructor are dropped unread. Calling an
    instance yields another placeholder, and the container protocols pickle may use on an
    object (BUILD, APPEND(S), SETITEM(S), ADDITEMS) are accepted and ignored, so an app object
    in ``args`` costs one placeholder instead of the whole row.
    """

    __slots__ = ()

    def __new__(cls, *args: object, **kwargs: object) -> _Placeholder:
        return object.__new__(_Placeholder)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> _Placeholder:
        return _Placeholder()

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, item: object) -> None:
        pass

    def extend(self, items: object) -> None:
        pass

    def add(self, item: object) -> None:
        pass

    def __repr__(self) -> str:
        return "<placeholder>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a placeholder for an undecoded object cannot be pickled")


class _Constructor:
    """A callable the allowlist hands to the unpickler in place of a real global.

    Module functions would do, except that pickle's BUILD opcode on a function sets its
    attributes (``__defaults__`` included) for the whole process; this wrapper refuses BUILD
    and has no attributes to set.
    """

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setstate__(self, state: object) -> NoReturn:
        _reject("job_state tries to modify an allowed global")

    def __repr__(self) -> str:
        return f"<safe {self._fn.__name__}>"


# --------------------------------------------------------------------------------------------
# Time zones: zoneinfo and pytz without pytz
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Trigger classes
# --------------------------------------------------------------------------------------------


def _stand_in(real: type, attributes: frozenset[str]) -> type:
    """A stand-in for a cron field/expression class, which has no ``__setstate__``.

    Without one, BUILD applied to the *class* object would ``setattr`` arbitrary attributes on
    APScheduler's real class for the whole process. The stand-in's ``__setstate__`` accepts
    exactly the attributes APScheduler 3.10/3.11 write. Instances keep the stand-in class until
    the finished trigger has been validated (:func:`_check_cron` then gives them the real
    class), so no opcode can reach a real instance's default BUILD.
    """

    def __setstate__(self: Any, state: object) -> None:
        if type(state) is not dict or state.keys() != attributes:
            _reject(f"job_state has an invalid {real.__name__}")
        self.__dict__.update(state)

    return type(real.__name__, (real,), {"__setstate__": __setstate__, "__module__": __name__})


_EXPRESSION_ATTRIBUTES: Final[dict[type, frozenset[str]]] = {
    cron_expressions.AllExpression: frozenset({"step"}),
    cron_expressions.RangeExpression: frozenset({"step", "first", "last"}),
    cron_expressions.MonthRangeExpression: frozenset({"step", "first", "last"}),
    cron_expressions.WeekdayRangeExpression: frozenset({"step", "first", "last"}),
    cron_expressions.WeekdayPositionExpression: frozenset({"step", "option_num", "weekday"}),
    cron_expressions.LastDayOfMonthExpression: frozenset({"step"}),
}
_FIELD_CLASSES: Final = (
    cron_fields.BaseField,
    cron_fields.WeekField,
    cron_fields.DayOfMonthField,
    cron_fields.DayOfWeekField,
    cron_fields.MonthField,
)
_FIELD_ATTRIBUTES: Final = frozenset({"name", "is_default", "expressions"})

# The classes a combining trigger may name in its state, by APScheduler's "module:qualname".
_NESTED_TRIGGERS: Final[dict[str, type]] = {
    "apscheduler.triggers.cron:CronTrigger": CronTrigger,
    "apscheduler.triggers.interval:IntervalTrigger": IntervalTrigger,
    "apscheduler.triggers.date:DateTrigger": DateTrigger,
    "apscheduler.triggers.combining:AndTrigger": AndTrigger,
    "apscheduler.triggers.combining:OrTrigger": OrTrigger,
}
if _CalendarIntervalTrigger is not None:
    _NESTED_TRIGGERS["apscheduler.triggers.calendarinterval:CalendarIntervalTrigger"] = (
        _CalendarIntervalTrigger
    )


_COMBINING_REFS: Final = frozenset(
    {"apscheduler.triggers.combining:AndTrigger", "apscheduler.triggers.combining:OrTrigger"}
)

# Triggers the combined triggers of the row being decoded may still build (per thread and
# decode: see ``_unpickle``). A row can hold several combined triggers (one BUILD each, all
# sharing one subtree), so a bound per trigger alone would not do.
_nodes_left: ContextVar[list[int] | None] = ContextVar("_nodes_left", default=None)


def _measure_combining(
    state: object, depth: int, sizes: dict[int, tuple[int, int]]
) -> tuple[int, int]:
    """The (triggers, nesting) that restoring ``state`` would build, found without building.

    A state shared through the pickle memo is measured once but counted wherever it is
    referenced, as restoring builds it there again; so the work is bounded by the size of the
    pickle while the count is that of the tree. Rejects as soon as a bound is passed (a cycle
    in the state passes the nesting bound at once).
    """
    if depth >= _MAX_TRIGGER_NESTING:
        _reject("job_state nests combined triggers too deeply")
    known = sizes.get(id(state))
    if known is not None:
        if depth + known[1] > _MAX_TRIGGER_NESTING:
            _reject("job_state nests combined triggers too deeply")
        return known
    if type(state) is not dict:
        _reject("job_state has an invalid combined trigger")
    children: Any = state.get("triggers")
    if type(children) not in (list, tuple):
        _reject("job_state has an invalid combined trigger")
    if len(children) > _MAX_TRIGGER_CHILDREN:
        _reject(f"job_state combines more than {_MAX_TRIGGER_CHILDREN} triggers in one")
    nodes, height = 1, 1
    for child in children:
        if type(child) in (tuple, list) and len(child) == 2 and child[0] in _COMBINING_REFS:
            child_nodes, child_height = _measure_combining(child[1], depth + 1, sizes)
            nodes += child_nodes
            height = max(height, child_height + 1)
        else:  # a leaf, or something _restore_combining rejects
            nodes += 1
        if nodes > _MAX_TRIGGER_NODES:
            _reject(f"job_state combines more than {_MAX_TRIGGER_NODES} triggers")
    sizes[id(state)] = (nodes, height)
    return nodes, height


def _restore_bounded(obj: Any, state: object) -> None:
    """Restore a combined trigger handed out by ``find_class``, within the row's bounds."""
    nodes, _height = _measure_combining(state, 0, {})
    left = _nodes_left.get()
    if left is None:  # called outside a decode: this trigger alone is bounded
        left = [_MAX_TRIGGER_NODES]
    if nodes > left[0]:
        _reject(f"job_state combines more than {_MAX_TRIGGER_NODES} triggers")
    left[0] -= nodes
    _restore_combining(obj, state, 0)


def _restore_combining(obj: Any, state: object, depth: int) -> None:
    """What ``BaseCombiningTrigger.__setstate__`` does, minus importing arbitrary modules.

    APScheduler resolves each child's ``"module:Class"`` with ``ref_to_obj``, which imports any
    module a row names. Here the name must be one of the trigger classes above; the child is
    then restored with its own (import-free) ``__setstate__``, or recursively for And/Or.
    Only reached through :func:`_restore_bounded`, which has checked the size of the tree.
    """
    if depth >= _MAX_TRIGGER_NESTING:
        _reject("job_state nests combined triggers too deeply")
    if type(state) is not dict:
        _reject("job_state has an invalid combined trigger")
    version = state.get("version", 1)
    if type(version) is not int or version > 1:
        _reject("job_state has a combined trigger of an unsupported version")
    children: Any = state.get("triggers")
    if type(children) not in (list, tuple):
        _reject("job_state has an invalid combined trigger")
    built = []
    for child in children:
        if type(child) not in (tuple, list) or len(child) != 2:
            _reject("job_state has an invalid combined trigger")
        ref, child_state = child
        cls: Any = _NESTED_TRIGGERS.get(ref) if type(ref) is str else None
        if cls is None:
            _reject("job_state combines a trigger class outside the allowlist")
        # Children are created here, never by an opcode, so no later BUILD can reach them
        # and they may have their real class from the start.
        trigger = cls.__new__(cls)
        if cls is AndTrigger or cls is OrTrigger:
            _restore_combining(trigger, child_state, depth + 1)
        elif type(child_state) is dict:
            trigger.__setstate__(child_state)
        else:
            _reject("job_state has an invalid combined trigger")
        built.append(trigger)
    obj.jitter = state.get("jitter")
    obj.triggers = built


class _SafeAndTrigger(AndTrigger):  # type: ignore[misc]
    """Handed out for ``AndTrigger``. It keeps this class until the decoded trigger has been
    validated: a real ``AndTrigger`` reachable from the memo could be sent through the real,
    importing ``__setstate__`` by a second BUILD."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        _restore_bounded(self, state)


class _SafeOrTrigger(OrTrigger):  # type: ignore[misc]
    """Handed out for ``OrTrigger``; see :class:`_SafeAndTrigger`."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        _restore_bounded(self, state)


# --------------------------------------------------------------------------------------------
# The allowlist
# --------------------------------------------------------------------------------------------

_pytz_utc_constructor: Final = _Constructor(_pytz_utc)

_ALLOWED_GLOBALS: Final[dict[tuple[str, str], object]] = {
    ("datetime", "datetime"): _Constructor(_make_datetime),
    ("datetime", "date"): _Constructor(_make_date),
    ("datetime", "time"): _Constructor(_make_time),
    ("datetime", "timedelta"): timedelta,
    ("datetime", "timezone"): timezone,
    ("zoneinfo", "ZoneInfo"): ZoneInfo,
    # ZoneInfo pickles through getattr(ZoneInfo, "_unpickle"); see _getattr.
    ("builtins", "getattr"): _Constructor(_getattr),
    ("__builtin__", "getattr"): _Constructor(_getattr),  # protocol 2 spelling
    ("_codecs", "encode"): _Constructor(_latin1_encode),  # protocol 2 bytes
    ("pytz", "_p"): _Constructor(_pytz_p),
    ("pytz", "_UTC"): _pytz_utc_constructor,
    ("pytz", "utc"): UTC,
    ("pytz", "UTC"): UTC,
    ("pytz", "FixedOffset"): _Constructor(_pytz_fixed_offset),
    # Triggers with their own import-free __setstate__ (BUILD on the class object fails).
    ("apscheduler.triggers.cron", "CronTrigger"): CronTrigger,
    ("apscheduler.triggers.interval", "IntervalTrigger"): IntervalTrigger,
    ("apscheduler.triggers.date", "DateTrigger"): DateTrigger,
    ("apscheduler.triggers.combining", "AndTrigger"): _SafeAndTrigger,
    ("apscheduler.triggers.combining", "OrTrigger"): _SafeOrTrigger,
}
# Real class -> stand-in handed out by find_class; validation accepts either and leaves the
# real one (a field shared by two triggers is seen twice).
_STAND_INS: Final[dict[type, type]] = {
    cls: _stand_in(cls, _FIELD_ATTRIBUTES) for cls in _FIELD_CLASSES
} | {cls: _stand_in(cls, attributes) for cls, attributes in _EXPRESSION_ATTRIBUTES.items()}
for _real, _substitute in _STAND_INS.items():
    _ALLOWED_GLOBALS[_real.__module__, _real.__name__] = _substitute
_REAL_CRON_PART: Final[dict[type, type]] = {cls: cls for cls in _STAND_INS} | {
    substitute: real for real, substitute in _STAND_INS.items()
}
if _CalendarIntervalTrigger is not None:
    _ALLOWED_GLOBALS["apscheduler.triggers.calendarinterval", "CalendarIntervalTrigger"] = (
        _CalendarIntervalTrigger
    )


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals only through :data:`_ALLOWED_GLOBALS`; never imports anything."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        return _Placeholder if found is None else found

    def persistent_load(self, pid: Any) -> NoReturn:
        _reject("job_state uses persistent ids")


def _unpickle(data: bytes) -> object:
    prescan(data)
    budget = _nodes_left.set([_MAX_TRIGGER_NODES])
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except (_Reject, UndecodableJob):
        raise
    except EOFError:
        _reject("job_state pickle is truncated")
    except pickle.UnpicklingError:
        _reject("job_state is not a valid pickle")
    except RecursionError:
        _reject("job_state is nested too deeply")
    except MemoryError:
        _reject("job_state needs too much memory to decode")
    except Exception as exc:
        _reject(f"job_state could not be unpickled ({type(exc).__name__})")
    finally:
        _nodes_left.reset(budget)


# --------------------------------------------------------------------------------------------
# Validation of what came out
# --------------------------------------------------------------------------------------------


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


def _count_placeholders(*roots: object) -> int:
    """Placeholders reachable from ``args``/``kwargs``.

    An instance shared through the pickle memo is one object and counts once; a bare class
    reference (every unknown class becomes the one ``_Placeholder`` class) counts wherever it
    appears. Iterative, so no depth limit is needed, and by id, so nothing hostile is hashed.
    """
    count = 0
    seen: set[int] = set()
    pending = list(roots)
    while pending:
        obj: Any = pending.pop()
        kind = type(obj)
        if obj is _Placeholder:
            count += 1
        elif kind is _Placeholder:
            if id(obj) not in seen:
                seen.add(id(obj))
                count += 1
        elif kind in (list, tuple, set, frozenset, dict):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if kind is dict:
                pending.extend(obj.keys())
                pending.extend(obj.values())
            else:
                pending.extend(obj)
    return count


def _decode(data: object) -> DecodedJob:
    if not isinstance(data, bytes | bytearray | memoryview):
        _reject("job_state is not binary data")
    raw = bytes(data)
    if not raw:
        _reject("job_state is empty")
    if len(raw) > MAX_JOB_STATE_BYTES:
        _reject(f"job_state is larger than {MAX_JOB_STATE_BYTES} bytes ({len(raw)} bytes)")
    state = _unpickle(raw)
    if type(state) is not dict:
        _reject("job_state is not a dict")
    version = state.get("version", 1)
    if type(version) is not int or version > 1:
        _reject("job_state has an unsupported version")

    job_id = state.get("id")
    if type(job_id) is not str:
        _reject("job_state has no string id")

    trigger = state.get("trigger")
    _check_trigger(trigger)

    name = state.get("name")
    if name is not None and type(name) is not str:
        _reject("job_state name is not a string")
    func = state.get("func")
    executor = state.get("executor", _DEFAULT_EXECUTOR)
    if type(executor) is not str:
        _reject("job_state executor is not a string")

    misfire = state.get("misfire_grace_time", _DEFAULT_MISFIRE_GRACE_TIME)
    if misfire is not None and not _is_seconds(misfire):
        _reject("job_state misfire_grace_time is not a number of seconds")
    coalesce = state.get("coalesce", _DEFAULT_COALESCE)
    if type(coalesce) is not bool:
        _reject("job_state coalesce is not a boolean")
    max_instances = state.get("max_instances", _DEFAULT_MAX_INSTANCES)
    if type(max_instances) is not int or max_instances < 1:
        _reject("job_state max_instances is not a positive integer")
    next_run_time = state.get("next_run_time")
    if next_run_time is not None and not _is_aware(next_run_time):
        _reject("job_state next_run_time is not an aware datetime")

    args = state.get("args", ())
    kwargs = state.get("kwargs", {})
    if type(args) not in (tuple, list) or type(kwargs) is not dict:
        _reject("job_state args/kwargs have the wrong types")

    return DecodedJob(
        id=job_id,
        name=name,
        func=func if type(func) is str else None,
        trigger=trigger,  # type: ignore[arg-type]
        executor=executor,
        misfire_grace_time=None if misfire is None else float(misfire),
        coalesce=coalesce,
        max_instances=max_instances,
        next_run_time=next_run_time,
        placeholders=_count_placeholders(args, kwargs),
    )


def decode_job_state(data: bytes) -> DecodedJob:
    """Decode one ``apscheduler_jobs.job_state`` value without trusting it.

    Raises :class:`UndecodableJob` (and nothing else) when the bytes are not a job state this
    module can decode safely: garbage, truncated or oversized data, a top level that is not a
    dict, a missing or non-string id, a trigger outside the allowlist or with invalid values,
    or a field of the wrong type. Objects outside the allowlist inside ``args``/``kwargs`` are
    not an error; they are counted in :attr:`DecodedJob.placeholders`.
    """
    try:
        return _decode(data)
    except UndecodableJob:
        raise
    except _Reject as exc:
        raise UndecodableJob(str(exc)) from None
    except RecursionError:
        raise UndecodableJob("job_state is nested too deeply") from None
    except MemoryError:
        raise UndecodableJob("job_state needs too much memory to decode") from None
    except Exception as exc:
        raise UndecodableJob(f"job_state could not be decoded ({type(exc).__name__})") from None
