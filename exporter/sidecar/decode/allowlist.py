"""The allowlist ``find_class`` answers from, and the restricted unpickler."""

from __future__ import annotations

import io
import pickle
from datetime import UTC, timedelta, timezone
from typing import Any, Final, NoReturn
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.sidecar.decode.model import _MAX_TRIGGER_NODES, UndecodableJob
from exporter.sidecar.decode.pickle_scan import Rejected as _Reject
from exporter.sidecar.decode.pickle_scan import prescan
from exporter.sidecar.decode.pickle_scan import reject as _reject
from exporter.sidecar.decode.placeholders import _Constructor, _Placeholder
from exporter.sidecar.decode.triggers import (
    _EXPRESSION_ATTRIBUTES,
    _FIELD_ATTRIBUTES,
    _FIELD_CLASSES,
    _nodes_left,
    _SafeAndTrigger,
    _SafeOrTrigger,
    _stand_in,
)
from exporter.sidecar.decode.zones import (
    _getattr,
    _latin1_encode,
    _make_date,
    _make_datetime,
    _make_time,
    _pytz_fixed_offset,
    _pytz_p,
    _pytz_utc,
)

try:  # APScheduler 3.11+ only; 3.10 writers never store it.
    from apscheduler.triggers.calendarinterval import (
        CalendarIntervalTrigger as _CalendarIntervalTrigger,
    )
except ImportError:  # pragma: no cover - depends on the installed APScheduler
    _CalendarIntervalTrigger = None

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
