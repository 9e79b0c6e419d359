"""From a validated payload to a :class:`DecodedJob`: the public ``decode_job_state``."""

from __future__ import annotations

from typing import Any

from exporter.sidecar.decode.allowlist import _unpickle
from exporter.sidecar.decode.model import (
    _DEFAULT_COALESCE,
    _DEFAULT_EXECUTOR,
    _DEFAULT_MAX_INSTANCES,
    _DEFAULT_MISFIRE_GRACE_TIME,
    MAX_JOB_STATE_BYTES,
    DecodedJob,
    UndecodableJob,
)
from exporter.sidecar.decode.pickle_scan import Rejected as _Reject
from exporter.sidecar.decode.pickle_scan import reject as _reject
from exporter.sidecar.decode.placeholders import _Placeholder
from exporter.sidecar.decode.validate import _check_trigger, _is_aware, _is_seconds

try:  # APScheduler 3.11+ only; 3.10 writers never store it.
    from apscheduler.triggers.calendarinterval import (
        CalendarIntervalTrigger as _CalendarIntervalTrigger,
    )
except ImportError:  # pragma: no cover - depends on the installed APScheduler
    _CalendarIntervalTrigger = None


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
