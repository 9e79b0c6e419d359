"""Decoding ``job_state`` safely: rows written by real APScheduler 3.11 and 3.10 schedulers,
and hostile rows that must neither run code nor import modules.

Valid rows come from real schedulers with a real ``SQLAlchemyJobStore`` on SQLite (3.10.4 in a
subprocess, see ``aps310.py``), or from ``job.__getstate__()`` of a real ``Job`` where only the
pickle matters. Hostile rows are built with classes whose ``__reduce__`` names a dangerous
callable, or assembled opcode by opcode where no pickler would write them.
"""

from __future__ import annotations

import builtins
import contextlib
import copyreg
import importlib
import os
import pickle
import resource
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as time_of_day
from functools import cache
from pathlib import Path
from pickle import loads as plain_loads  # only ever named inside hostile payloads, never called
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import aps310
import pytest
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, BaseCombiningTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron import expressions as ex
from apscheduler.triggers.cron import fields as fl
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import IN_CI

from exporter.sidecar import decode
from exporter.sidecar.decode import (
    MAX_JOB_STATE_BYTES,
    DecodedJob,
    UndecodableJob,
    decode_job_state,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
IST = timezone(timedelta(hours=5, minutes=30))
NOW = datetime(2025, 10, 25, 12, 0, tzinfo=UTC)
NOWS = [NOW + timedelta(days=d) for d in (0, 1, 40, 400)]


def noop(*args: object, **kwargs: object) -> None:
    """The job function of every test job (referenced as text, never imported by the decoder)."""


class Worker:
    """An app object: a job on its bound method stores the instance in ``args``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: object, **kwargs: object) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Rows from a real 3.11 scheduler and SQLAlchemyJobStore
# ---------------------------------------------------------------------------------------------


class Store:
    """A paused 3.11 scheduler on a SQLite job store; ``rows()`` reads the raw table."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{path}")}, timezone="UTC"
        )
        self.scheduler.start(paused=True)

    def add(self, trigger: BaseTrigger, job_id: str, func: Any = noop, **options: Any) -> Job:
        return self.scheduler.add_job(func, trigger, id=job_id, **options)

    def rows(self) -> dict[str, bytes]:
        with sqlite3.connect(self.path) as conn:
            return dict(conn.execute("SELECT id, job_state FROM apscheduler_jobs").fetchall())

    def row(self, job_id: str) -> bytes:
        return self.rows()[job_id]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "jobs.sqlite")
    yield s
    # Shutting down runs one more pass over due jobs even when paused; leave none behind.
    s.scheduler.remove_all_jobs()
    s.scheduler.shutdown(wait=False)


def fire_times(trigger: BaseTrigger) -> list[datetime | None]:
    return [trigger.get_next_fire_time(None, now) for now in NOWS]


def assert_same_trigger(decoded: BaseTrigger | None, original: BaseTrigger) -> None:
    assert type(decoded) is type(original)
    assert decoded is not None
    assert str(decoded) == str(original)
    assert repr(decoded) == repr(original)
    if not getattr(original, "jitter", None):
        assert fire_times(decoded) == fire_times(original)


CRON_SHAPES: dict[str, tuple[dict[str, Any], dict[str, type]]] = {
    # name: (CronTrigger kwargs, {field name: expression class expected there})
    "last_day": ({"day": "last"}, {"day": ex.LastDayOfMonthExpression}),
    "first_monday": ({"day": "1st mon", "hour": 9}, {"day": ex.WeekdayPositionExpression}),
    "last_friday": ({"day": "last fri"}, {"day": ex.WeekdayPositionExpression}),
    "every_other_week": ({"week": "*/2", "day_of_week": "mon"}, {"week": ex.AllExpression}),
    "month_range": ({"month": "jan-mar,oct", "day": 15}, {"month": ex.MonthRangeExpression}),
    "weekdays": (
        {"day_of_week": "mon-fri", "hour": "8-18/2", "minute": "*/15"},
        {"day_of_week": ex.WeekdayRangeExpression, "hour": ex.RangeExpression},
    ),
    "years": ({"year": "2030-2035", "month": 6}, {"year": ex.RangeExpression}),
    "jitter_and_dates": (
        {
            "hour": 2,
            "jitter": 120,
            "start_date": datetime(2026, 1, 1, tzinfo=BERLIN),
            "end_date": datetime(2040, 1, 1, tzinfo=UTC),
        },
        {"hour": ex.RangeExpression},
    ),
}
ZONES: dict[str, Any] = {
    "zoneinfo": BERLIN,
    "utc": UTC,
    "fixed_offset": IST,
    "zone_name": "America/New_York",
}


@pytest.mark.parametrize("zone", ZONES.values(), ids=ZONES.keys())
@pytest.mark.parametrize("shape", CRON_SHAPES.values(), ids=CRON_SHAPES.keys())
def test_cron_triggers(store: Store, shape: tuple[dict[str, Any], dict[str, type]], zone: Any):
    options, expected_kinds = shape
    job = store.add(CronTrigger(timezone=zone, **options), "cron")
    decoded = decode_job_state(store.row("cron"))

    assert_same_trigger(decoded.trigger, job.trigger)
    trigger: Any = decoded.trigger
    assert trigger.timezone == job.trigger.timezone
    assert [f.name for f in trigger.fields] == list(CronTrigger.FIELD_NAMES)
    for field in trigger.fields:
        assert type(field) is CronTrigger.FIELDS_MAP[field.name]
        for expr in field.expressions:
            assert type(expr) in field.COMPILERS
    for name, kind in expected_kinds.items():
        field = trigger.fields[CronTrigger.FIELD_NAMES.index(name)]
        assert kind in {type(e) for e in field.expressions}
    assert decoded.next_run_time == job.next_run_time


def test_cron_from_crontab(store: Store) -> None:
    job = store.add(CronTrigger.from_crontab("0 2 * * 1-5", timezone=BERLIN), "crontab")
    assert_same_trigger(decode_job_state(store.row("crontab")).trigger, job.trigger)


@pytest.mark.parametrize(
    "trigger",
    [
        IntervalTrigger(hours=6, timezone=UTC),
        IntervalTrigger(minutes=90, start_date=datetime(2025, 1, 1, 3, tzinfo=BERLIN)),
        IntervalTrigger(
            weeks=1,
            jitter=5,
            timezone=IST,
            start_date=datetime(2025, 1, 1, tzinfo=IST),
            end_date=datetime(2035, 1, 1, tzinfo=IST),
        ),
        DateTrigger(datetime(2030, 1, 1, 9, 0, tzinfo=BERLIN)),
        DateTrigger(datetime(2030, 7, 1, 9, 0, tzinfo=IST)),
        CalendarIntervalTrigger(months=1, hour=3, timezone=BERLIN),
        CalendarIntervalTrigger(
            years=1, weeks=2, days=3, second=30, timezone=UTC, start_date="2026-02-28"
        ),
    ],
    ids=lambda t: str(t),
)
def test_interval_date_and_calendar_triggers(store: Store, trigger: BaseTrigger) -> None:
    job = store.add(trigger, "job")
    decoded = decode_job_state(store.row("job"))
    assert_same_trigger(decoded.trigger, job.trigger)
    assert decoded.next_run_time == job.next_run_time


ALIGNED = datetime(2025, 1, 1, tzinfo=UTC)
COMBINED = {
    "or_of_and": OrTrigger(
        [
            AndTrigger(
                [
                    CronTrigger(hour="*/2", timezone=BERLIN),
                    IntervalTrigger(hours=1, start_date=ALIGNED, timezone=UTC),
                ]
            ),
            DateTrigger(datetime(2031, 6, 1, 12, tzinfo=UTC)),
            CalendarIntervalTrigger(months=1, hour=3, timezone=BERLIN, start_date="2031-01-01"),
        ]
    ),
    # (No CalendarIntervalTrigger inside an And: with no previous fire time it ignores ``now``,
    # and AndTrigger would search forever, in APScheduler as here.)
    "and_of_or": AndTrigger(
        [
            OrTrigger(
                [
                    CronTrigger(day_of_week="mon", hour=9, timezone=UTC),
                    CronTrigger(day="last", hour=9, timezone=UTC),
                ]
            ),
            IntervalTrigger(days=1, start_date=datetime(2025, 1, 1, 9, tzinfo=UTC)),
        ],
        jitter=3,
    ),
}


@pytest.mark.parametrize("trigger", COMBINED.values(), ids=COMBINED.keys())
def test_combined_triggers_nested_two_levels(store: Store, trigger: BaseTrigger) -> None:
    job = store.add(trigger, "combined")
    decoded = decode_job_state(store.row("combined")).trigger
    assert_same_trigger(decoded, job.trigger)
    outer: Any = decoded
    assert outer.jitter == job.trigger.jitter
    inner = outer.triggers[0]
    assert type(inner) is type(job.trigger.triggers[0])  # real classes all the way down
    assert [type(t) for t in inner.triggers] == [type(t) for t in job.trigger.triggers[0].triggers]


def test_job_fields(store: Store) -> None:
    store.add(
        IntervalTrigger(hours=1),
        "custom",
        name="Nightly report",
        executor="processpool",
        misfire_grace_time=None,
        coalesce=False,
        max_instances=3,
    )
    store.add(IntervalTrigger(hours=1), "graceful", misfire_grace_time=30)
    store.add(IntervalTrigger(hours=1), "paused").pause()
    rows = store.rows()

    custom = decode_job_state(rows["custom"])
    assert custom == DecodedJob(
        id="custom",
        name="Nightly report",
        func=f"{__name__}:noop",
        trigger=custom.trigger,
        executor="processpool",
        misfire_grace_time=None,
        coalesce=False,
        max_instances=3,
        next_run_time=store.scheduler.get_job("custom").next_run_time,
        placeholders=0,
    )
    assert custom.next_run_time is not None and custom.next_run_time.utcoffset() is not None
    graceful = decode_job_state(rows["graceful"])
    assert graceful.misfire_grace_time == 30.0 and isinstance(graceful.misfire_grace_time, float)
    assert (graceful.coalesce, graceful.max_instances, graceful.executor) == (True, 1, "default")
    assert decode_job_state(rows["paused"]).next_run_time is None


def test_app_objects_in_args_become_placeholders(store: Store) -> None:
    shared = Worker("shared")
    store.add(IntervalTrigger(hours=1), "bound", func=Worker("self").run)
    store.add(
        IntervalTrigger(hours=1),
        "kwargs",
        args=(1, "two", [Worker("in a list")], shared),
        kwargs={"again": shared, "when": NOW, "nested": {"deep": (Worker("in a tuple"),)}},
    )
    store.add(
        IntervalTrigger(hours=1),
        "plain",
        args=(1, 2.5, "x", None, [1, 2], (3,), {4}, frozenset({5}), b"raw", NOW),
        kwargs={"zone": BERLIN, "delta": timedelta(seconds=3), "utc": UTC},
    )
    rows = store.rows()

    bound = decode_job_state(rows["bound"])
    assert bound.func == f"{__name__}:Worker.run"
    assert bound.placeholders == 1  # the stored ``self``
    assert decode_job_state(rows["kwargs"]).placeholders == 3  # ``shared`` counts once
    assert decode_job_state(rows["plain"]).placeholders == 0


def test_the_job_module_is_never_imported() -> None:
    """``func`` stays text: decoding a job whose module cannot be imported still works."""
    state = make_state(func="not_an_importable_module.tasks:backup")
    decoded = decode_job_state(pickle.dumps(state, 5))
    assert decoded.func == "not_an_importable_module.tasks:backup"
    assert "not_an_importable_module" not in sys.modules


# ---------------------------------------------------------------------------------------------
# Job states from a real Job, every protocol APScheduler could have been configured with
# ---------------------------------------------------------------------------------------------


def make_job(trigger: BaseTrigger | None = None, **options: Any) -> Job:
    """A real ``Job`` (its ``__getstate__`` is what every job store pickles)."""
    scheduler = BackgroundScheduler(timezone="UTC")
    defaults: dict[str, Any] = {
        "id": "job",
        "func": noop,
        "trigger": trigger or IntervalTrigger(hours=1, timezone=UTC),
        "executor": "default",
        "args": (),
        "kwargs": {},
        "name": "job",
        "misfire_grace_time": 1,
        "coalesce": True,
        "max_instances": 1,
        "next_run_time": datetime(2030, 1, 1, tzinfo=UTC),
    }
    return Job(scheduler, **{**defaults, **options})


def make_state(**overrides: Any) -> dict[str, Any]:
    """A real job's state with fields replaced (hostile or broken values included)."""
    return {**make_job().__getstate__(), **overrides}


SAMPLE_TRIGGERS: list[BaseTrigger] = [
    CronTrigger(day="last fri", month="jan-mar", week="*/2", hour="8-18/2", timezone=BERLIN),
    IntervalTrigger(hours=6, timezone=IST, start_date=datetime(2025, 1, 1, tzinfo=IST)),
    DateTrigger(datetime(2030, 1, 1, tzinfo=BERLIN)),
    CalendarIntervalTrigger(months=1, timezone=BERLIN, start_date="2025-01-01"),
    COMBINED["or_of_and"],
    COMBINED["and_of_or"],
]


@cache
def valid_payloads() -> tuple[bytes, ...]:
    jobs = [
        make_job(t, args=(Worker("w"), 1), kwargs={"k": [NOW]}, misfire_grace_time=m)
        for t, m in zip(SAMPLE_TRIGGERS, [None, 5, 1, 30, None, 2], strict=True)
    ]
    return tuple(pickle.dumps(job.__getstate__(), 5) for job in jobs)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("trigger", SAMPLE_TRIGGERS, ids=lambda t: type(t).__name__)
def test_every_pickle_protocol_from_2(trigger: BaseTrigger, protocol: int) -> None:
    job = make_job(trigger, args=(Worker("w"),), misfire_grace_time=None)
    decoded = decode_job_state(pickle.dumps(job.__getstate__(), protocol))
    assert_same_trigger(decoded.trigger, trigger)
    assert decoded.next_run_time == job.next_run_time
    assert (decoded.placeholders, decoded.misfire_grace_time) == (1, None)


def test_bytes_like_input() -> None:
    payload = valid_payloads()[0]
    for data in (bytearray(payload), memoryview(payload)):
        assert decode_job_state(data).id == "job"  # type: ignore[arg-type]


def test_decoding_is_thread_safe() -> None:
    payloads = valid_payloads()
    expected = [repr(decode_job_state(p)) for p in payloads]
    failures: list[str] = []

    def work() -> None:
        for _ in range(50):
            for payload, want in zip(payloads, expected, strict=True):
                got = repr(decode_job_state(payload))
                if got != want:
                    failures.append(got)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


# ---------------------------------------------------------------------------------------------
# Rows written by APScheduler 3.10.4 with pytz zones
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aps310_dir() -> Path:
    found = aps310.find_aps310()
    if found is None:
        reason = f"APScheduler 3.10.4 is not installed in {aps310.APS310_DIR}: run `make aps310`"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: the 3.10 writer is required)", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def rows_310(aps310_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    db = tmp_path_factory.mktemp("aps310") / "jobs.sqlite"
    expected = aps310.run_python(aps310.WRITER_310, [aps310_dir], str(db))
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT id, job_state FROM apscheduler_jobs").fetchall())
    assert set(rows) == set(expected["jobs"])
    return {"rows": rows, **expected}


@pytest.fixture(scope="session")
def rows_311_pytz(aps310_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 3.11 app passing pytz-aware datetimes: only pytz is added to the path."""
    tmp = tmp_path_factory.mktemp("aps311pytz")
    (tmp / "path").mkdir()
    (tmp / "path" / "pytz").symlink_to(aps310_dir / "pytz", target_is_directory=True)
    db = tmp / "jobs.sqlite"
    expected = aps310.run_python(aps310.WRITER_311_PYTZ, [tmp / "path"], str(db))
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT id, job_state FROM apscheduler_jobs").fetchall())
    return {"rows": rows, **expected}


def test_310_rows_decode_like_310_reads_them(rows_310: dict[str, Any]) -> None:
    pytz_loaded = "pytz" in sys.modules
    nows = [datetime.fromtimestamp(ts, UTC) for ts in rows_310["nows"]]
    for job_id, want in rows_310["jobs"].items():
        job = decode_job_state(rows_310["rows"][job_id])
        trigger: Any = job.trigger
        assert type(trigger).__name__ == want["trigger"], job_id
        assert type(trigger).__module__.startswith("apscheduler.triggers."), job_id
        assert str(trigger) == want["str"], job_id
        got_next = job.next_run_time.timestamp() if job.next_run_time else None
        assert got_next == want["next_run_time"], job_id
        assert job.misfire_grace_time == want["misfire_grace_time"], job_id
        assert (job.coalesce, job.max_instances, job.name) == (
            want["coalesce"],
            want["max_instances"],
            want["name"],
        ), job_id
        if want["fires"]:
            fires = [trigger.get_next_fire_time(None, now) for now in nows]
            assert [f.timestamp() if f else None for f in fires] == want["fires"], job_id
    assert pytz_loaded or "pytz" not in sys.modules  # decoded without importing pytz


def test_310_pytz_zones_become_standard_zones(rows_310: dict[str, Any]) -> None:
    rows = rows_310["rows"]

    def trigger(job_id: str) -> Any:
        return decode_job_state(rows[job_id]).trigger

    assert trigger("cron_default_zone").timezone is BERLIN  # pytz Europe/Berlin
    assert trigger("cron_pytz_utc").timezone is UTC  # pytz.utc
    assert trigger("cron_fixed").timezone == IST  # pytz.FixedOffset(330)
    assert trigger("cron_ranges").timezone is NEW_YORK
    assert trigger("cron_ranges").start_date == datetime(2025, 1, 1, tzinfo=NEW_YORK)
    assert trigger("cron_zoneinfo").timezone is ZoneInfo("Asia/Kolkata")
    assert trigger("date_berlin").run_date == datetime(2030, 1, 1, 9, tzinfo=BERLIN)
    assert trigger("date_berlin").run_date.tzinfo is BERLIN

    # The second 02:30 of 2025-10-26 in Berlin (pytz is_dst=False): same instant, fold=1.
    start = trigger("interval_repeated_hour").start_date
    assert start.timestamp() == rows_310["repeated"]
    assert (start.tzinfo, start.fold, start.utcoffset()) == (BERLIN, 1, timedelta(hours=1))

    or_and = trigger("or_and")
    assert type(or_and) is OrTrigger and type(or_and.triggers[0]) is AndTrigger
    assert or_and.triggers[0].triggers[0].timezone is BERLIN


def test_310_bound_method_job(rows_310: dict[str, Any]) -> None:
    job = decode_job_state(rows_310["rows"]["bound_method"])
    assert job.func == "__main__:Worker.run"
    assert job.placeholders == 3  # self, Worker("arg"), Worker("kw")


def test_311_rows_with_user_supplied_pytz_datetimes(rows_311_pytz: dict[str, Any]) -> None:
    rows = rows_311_pytz["rows"]
    run_date = decode_job_state(rows["date_pytz"]).trigger.run_date  # type: ignore[union-attr]
    assert run_date.timestamp() == rows_311_pytz["run_date"]
    assert (run_date.tzinfo, run_date.fold) == (ZoneInfo("Europe/Vienna"), 0)  # first 02:30
    interval: Any = decode_job_state(rows["interval_pytz_fixed"]).trigger
    assert interval.start_date.timestamp() == rows_311_pytz["start"]
    assert interval.start_date.tzinfo == timezone(timedelta(hours=-3))


# ---------------------------------------------------------------------------------------------
# Hostile rows
# ---------------------------------------------------------------------------------------------


class Call:
    """Pickles as ``func(*args)``: what a forged row makes the unpickler call."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args

    def __call__(self) -> None:  # pickle insists that the reduce callable be callable
        raise AssertionError("never called")


def attr(obj: Any, name: str) -> Call:
    return Call(getattr, obj, name)


EVIL_MODULE = "jse_evil_module"


@pytest.fixture
def sentinel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A file only a successful attack creates; also an importable module that creates it."""
    path = tmp_path / "pwned"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / f"{EVIL_MODULE}.py").write_text(
        f"open({str(path)!r}, 'w').close()\nclass Trigger:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    before = set(sys.modules)
    yield path
    assert not path.exists(), "a hostile payload ran"
    assert EVIL_MODULE not in sys.modules
    assert set(sys.modules) - before == set(), "decoding imported a module"


def hostile_callables(sentinel: Path) -> dict[str, Call]:
    touch = f"open({str(sentinel)!r}, 'w').close()"
    # getattr(getattr(f, "__globals__").get("__builtins__"), ...) reaches exec from any function
    builtins_of_a_module = Call(
        attr(attr(CronTrigger.__init__, "__globals__"), "get"), "__builtins__"
    )
    code_via_globals = Call(attr(builtins_of_a_module, "get"), "exec")
    return {
        "os.system": Call(os.system, f"touch {sentinel}"),
        "subprocess.check_call": Call(subprocess.check_call, ["touch", str(sentinel)]),
        "subprocess.Popen": Call(subprocess.Popen, ["touch", str(sentinel)]),
        "builtins.eval": Call(builtins.eval, touch),
        "builtins.exec": Call(builtins.exec, touch),
        "builtins.open": Call(builtins.open, str(sentinel), "w"),
        "builtins.__import__": Call(builtins.__import__, EVIL_MODULE),
        "importlib.import_module": Call(importlib.import_module, EVIL_MODULE),
        "getattr_to_exec": Call(code_via_globals, touch),
        "getattr_datetime": Call(attr(datetime, "fromtimestamp"), 0),
        "getattr_zoneinfo_other": Call(attr(ZoneInfo, "no_cache"), "UTC"),
        "nested_pickle": Call(plain_loads, pickle.dumps(Call(os.system, f"touch {sentinel}"))),
        "copyreg_reconstructor": Call(copyreg._reconstructor, Worker, object, None),
    }


PLACES = ["args", "kwargs", "trigger", "id", "top_level", "name", "next_run_time"]


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("place", PLACES)
def test_hostile_callables_are_never_called(sentinel: Path, place: str, protocol: int) -> None:
    for label, payload in hostile_callables(sentinel).items():
        if place == "top_level":
            state: Any = payload
        elif place == "args":
            state = make_state(args=(1, payload))
        elif place == "kwargs":
            state = make_state(kwargs={"x": [payload]})
        else:
            state = make_state(**{place: payload})
        data = pickle.dumps(state, protocol)
        try:
            job = decode_job_state(data)
        except UndecodableJob as exc:
            assert place not in ("args", "kwargs"), f"{label}: {exc}"
            assert "\n" not in str(exc) and len(str(exc)) <= 200
        else:
            assert place in ("args", "kwargs"), label
            assert job.placeholders == 1, label
        assert not sentinel.exists(), label


def test_placeholders_are_inert() -> None:
    placeholder = decode._Placeholder
    instance = placeholder("rm -rf /")
    assert type(instance(1, 2, k=3)) is placeholder
    assert type(placeholder.__new__(placeholder, "x")) is placeholder
    with pytest.raises(TypeError):
        pickle.dumps(instance)


def forged_combining(refs: list[str], nested: bool) -> dict[str, Any]:
    """A combining trigger state whose children name arbitrary ``module:Class`` references."""
    children = [(ref, {"version": 1}) for ref in refs]
    if nested:  # hide them one level down, inside an otherwise valid AndTrigger
        inner = AndTrigger([IntervalTrigger(hours=1, timezone=UTC)]).__getstate__()
        inner["triggers"] += children
        children = [("apscheduler.triggers.combining:AndTrigger", inner)]
    return {"version": 1, "jitter": None, "triggers": children}


@pytest.mark.parametrize("nested", [False, True], ids=["direct", "nested"])
@pytest.mark.parametrize("ref", ["os:system", "subprocess:Popen", f"{EVIL_MODULE}:Trigger"])
@pytest.mark.parametrize("cls", [OrTrigger, AndTrigger])
def test_combining_trigger_references_are_checked(
    sentinel: Path, cls: type, ref: str, nested: bool
) -> None:
    forged = forged_combining([ref], nested)
    with mock.patch.object(BaseCombiningTrigger, "__getstate__", lambda self: forged):
        data = pickle.dumps(make_state(trigger=cls([])), 5)
    with pytest.raises(UndecodableJob, match="outside the allowlist"):
        decode_job_state(data)


def test_combining_trigger_trap_is_real(sentinel: Path) -> None:
    """Control: APScheduler's own ``__setstate__`` imports what the state names."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(sentinel.parent / "mods")!r})
        from apscheduler.triggers.combining import OrTrigger
        trigger = OrTrigger.__new__(OrTrigger)
        try:
            trigger.__setstate__({forged_combining([f"{EVIL_MODULE}:Trigger"], False)!r})
        except Exception:
            pass
        print("imported" if "{EVIL_MODULE}" in sys.modules else "not imported")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "imported"
    sentinel.unlink()  # created by the control, in its own process


OR_REF = "apscheduler.triggers.combining:OrTrigger"
INTERVAL_CHILD = (
    "apscheduler.triggers.interval:IntervalTrigger",
    IntervalTrigger(
        hours=1, timezone=UTC, start_date=datetime(2026, 1, 1, tzinfo=UTC)
    ).__getstate__(),
)


def shared_tree(depth: int, children: int) -> dict[str, Any]:
    """An OrTrigger state ``depth`` levels deep with ``children`` children per level, every child
    a reference to one shared subtree: the pickler writes each level once (memo), restoring
    would build ``children ** depth`` triggers."""
    child: tuple[str, Any] = INTERVAL_CHILD
    state: dict[str, Any] = {}
    for _ in range(depth):
        state = {"version": 1, "jitter": None, "triggers": [child] * children}
        child = (OR_REF, state)
    return state


def row_with_combined(state: dict[str, Any], **fields: Any) -> bytes:
    with mock.patch.object(BaseCombiningTrigger, "__getstate__", lambda self: state):
        return pickle.dumps(make_state(trigger=OrTrigger([]), **fields), 5)


def test_memo_shared_trigger_tree_is_refused_before_it_is_built() -> None:
    """The 1 KB row that describes 10^8 triggers (8 levels of 10 shared children) is refused
    from its pickled state; restoring it first took gigabytes and killed the process. Decoded
    in a child process with a memory limit, so a regression fails here instead of killing
    the test run."""
    data = row_with_combined(shared_tree(8, 10))
    assert len(data) < 1500
    code = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from exporter.sidecar.decode import UndecodableJob, decode_job_state
        try:
            decode_job_state(bytes.fromhex(sys.stdin.read()))
            print("decoded")
        except UndecodableJob as exc:
            print(exc)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=data.hex(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "job_state combines more than 1000 triggers"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"version": 1, "jitter": None, "triggers": [INTERVAL_CHILD] * 101}, "more than 100"),
        (shared_tree(3, 11), "more than 1000 triggers"),  # 1 + 11 + 121 + 1331 triggers
        (shared_tree(9, 1), "too deeply"),
    ],
    ids=["children", "nodes", "depth"],
)
def test_combined_trigger_bounds(state: dict[str, Any], reason: str) -> None:
    with pytest.raises(UndecodableJob, match=reason):
        decode_job_state(row_with_combined(state))


def test_combined_trigger_bounds_are_per_row() -> None:
    """Two combined triggers sharing one subtree of 600 triggers: each is within the bound,
    together they are not (a row may hold any number of them in args)."""
    subtree = shared_tree(2, 23)  # 1 + 23 + 529 = 553 triggers
    assert decode_job_state(row_with_combined(subtree)).trigger is not None
    with mock.patch.object(BaseCombiningTrigger, "__getstate__", lambda self: subtree):
        data = pickle.dumps(make_state(trigger=OrTrigger([]), args=(OrTrigger([]),)), 5)
    with pytest.raises(UndecodableJob, match="more than 1000 triggers"):
        decode_job_state(data)


def test_combined_triggers_at_the_bounds_decode() -> None:
    wide = decode_job_state(row_with_combined(shared_tree(1, 100))).trigger
    assert len(wide.triggers) == 100  # type: ignore[union-attr]
    deep: Any = decode_job_state(row_with_combined(shared_tree(8, 1))).trigger
    for _ in range(7):
        deep = deep.triggers[0]
    assert type(deep) is OrTrigger and type(deep.triggers[0]) is IntervalTrigger


# Hand-assembled opcodes (protocol 2, no memo) for shapes no pickler writes.


def ops(obj: object) -> bytes:
    """Opcodes that push ``obj``, without PROTO/STOP and without memo entries."""
    pickler_file = __import__("io").BytesIO()
    pickler = pickle.Pickler(pickler_file, 2)
    pickler.fast = True  # no PUT opcodes, so fragments can be concatenated
    pickler.dump(obj)
    return pickler_file.getvalue()[2:-1]


def glob(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def job_with(trigger_ops: bytes, extra: bytes = b"") -> bytes:
    return b"\x80\x02}(" + ops("id") + ops("x") + ops("trigger") + trigger_ops + extra + b"u."


def test_second_build_on_a_combining_trigger_is_checked_too(sentinel: Path) -> None:
    """A real AndTrigger reachable from the memo would send a second BUILD through
    APScheduler's importing ``__setstate__``; the decoder's stand-in stays in place."""
    valid = AndTrigger([IntervalTrigger(hours=1, timezone=UTC)]).__getstate__()
    trigger = (
        glob("apscheduler.triggers.combining", "AndTrigger")
        + b")\x81q\x01"  # EMPTY_TUPLE NEWOBJ BINPUT 1
        + ops(valid)
        + b"b0h\x01"  # BUILD POP BINGET 1
        + ops(forged_combining([f"{EVIL_MODULE}:Trigger"], False))
        + b"b"
    )
    with pytest.raises(UndecodableJob, match="outside the allowlist"):
        decode_job_state(job_with(trigger))
    # the same opcodes without the second BUILD are a valid job
    first_only = trigger[: trigger.index(b"b0h\x01") + 1]
    assert type(decode_job_state(job_with(first_only)).trigger) is AndTrigger


def class_snapshot() -> dict[type, dict[str, int]]:
    """The attributes of every class the decoder hands out (``__slotnames__`` aside: the
    pickler caches it on a class the first time a test pickles one of its instances)."""
    classes = [c for c in decode._ALLOWED_GLOBALS.values() if isinstance(c, type)]
    classes += [*decode._STAND_INS, decode._Placeholder, decode._Constructor]
    return {c: {k: id(v) for k, v in vars(c).items() if k != "__slotnames__"} for c in classes}


@pytest.mark.parametrize(
    "module,name",
    [
        ("apscheduler.triggers.cron.expressions", "AllExpression"),
        ("apscheduler.triggers.cron.fields", "BaseField"),
        ("apscheduler.triggers.cron", "CronTrigger"),
        ("apscheduler.triggers.combining", "OrTrigger"),
        ("zoneinfo", "ZoneInfo"),
        ("datetime", "datetime"),
        ("datetime", "timedelta"),
        ("pytz", "utc"),
        ("builtins", "getattr"),
        ("collections", "OrderedDict"),
    ],
)
def test_build_on_an_allowed_global_cannot_modify_it(module: str, name: str) -> None:
    """BUILD with a (state, slotstate) pair would ``setattr`` onto a class for the whole
    process; every global the decoder hands out refuses it."""
    before = class_snapshot()
    slotstate = {"__str__": "x", "get_next_value": "x", "_fn": "x", "value_re": None}
    for target_ops in (glob(module, name), glob(module, name) + b")R"):
        for state in ({"__str__": "x"}, (None, slotstate)):
            data = job_with(ops(None), ops("args") + ops((1,)) + ops("k") + target_ops)
            data = data[:-2] + ops(state) + b"bu."
            with contextlib.suppress(UndecodableJob):
                decode_job_state(data)
    assert class_snapshot() == before
    assert ex.AllExpression.value_re is not None and str(ex.AllExpression()) == "*"


def test_placeholders_absorb_container_opcodes() -> None:
    """An app object pickled with list items, dict items and state still costs one
    placeholder, not the row (BUILD, APPENDS, SETITEMS on the placeholder)."""
    app_object = glob("myapp.models", "Thing") + b")\x81"  # NEWOBJ
    filled = app_object + b"(" + ops(1) + ops(2) + b"e" + b"(" + ops("k") + ops(3) + b"u"
    filled += ops({"state": 1}) + b"b"
    data = b"\x80\x02}(" + ops("id") + ops("x") + ops("trigger")
    data += ops(IntervalTrigger(hours=1, timezone=UTC)) + ops("args") + b"(" + filled + b"tu."
    assert decode_job_state(data).placeholders == 1


def test_memo_index_bombs_are_rejected_cheaply() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for data in (
        b"\x80\x05Nr\xff\xff\xff\x7f.",  # LONG_BINPUT 2**31-1
        b"\x80\x05Nr\x00\x00\x00\x10.",  # LONG_BINPUT 2**28
        b"\x80\x02Np400000000\n.",  # PUT 4e8
        b"\x80\x02Np1_000_000_000\n.",
    ):
        with pytest.raises(UndecodableJob, match="memo index"):
            decode_job_state(data)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100_000


def test_deeply_nested_tuples_do_not_crash_the_process() -> None:
    """Hashing a million-deep tuple (as a dict key) overflows the C stack in CPython 3.11;
    the decoder must refuse it before the unpickler builds the dict. Run in a subprocess so
    a regression shows up as a failure rather than a dead test run."""
    code = textwrap.dedent("""
        from exporter.sidecar.decode import UndecodableJob, decode_job_state
        key = b")" + b"\\x85" * 1_000_000
        for data in (b"\\x80\\x05}" + key + b"K\\x01s.", b"\\x80\\x05(" + key + b"\\x91."):
            try:
                decode_job_state(data)
                print("decoded")
            except UndecodableJob as exc:
                print(exc)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["job_state nests tuples too deeply"] * 2


def test_many_tuple_opcode_bytes_in_text_still_decode() -> None:
    """Text full of the bytes that look like tuple opcodes takes the exact (slow) path."""
    state = make_state(
        kwargs={"text": "t\x85\x86\x87" * 2000, "pairs": [(i, (i,)) for i in range(300)]}
    )
    assert decode_job_state(pickle.dumps(state, 5)).placeholders == 0


def test_deep_lists_decode_without_recursion() -> None:
    depth = 200_000
    deep = b"]" * depth + b"a" * (depth - 1)
    data = b"\x80\x02}(" + ops("id") + ops("x") + ops("trigger")
    data += ops(IntervalTrigger(hours=1, timezone=UTC)) + ops("args") + deep + b"u."
    assert decode_job_state(data).placeholders == 0


def test_oversized_rows_are_refused_unread() -> None:
    with pytest.raises(UndecodableJob, match="larger than"):
        decode_job_state(b"\x80\x05" + b"N" * MAX_JOB_STATE_BYTES + b".")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a pickle at all",
        b"\x80\x05",
        b"\x80\x05\x95\xff\xff\xff\xff\xff\xff\xff\x7f",  # FRAME longer than the data
        b"\x80\x05\x8e\xff\xff\xff\xff\xff\xff\xff\x00.",  # BINBYTES8 of ~2**56 bytes
        b"\x80\x04X\xff\xff\xff\x7f",  # BINUNICODE of 2 GiB, truncated
        b"\x80\x02Q.",  # persistent id
        b"\x80\x02\x82\x01.",  # extension registry
        b"\x80\x05\x97.",  # out-of-band buffer
        b"\x80\x02(((((((((((((((((((.",
        b"\xff" * 100,
        "a str, not bytes",
        None,
    ],
)
def test_garbage_is_undecodable(data: Any) -> None:
    with pytest.raises(UndecodableJob) as caught:
        decode_job_state(data)
    assert "\n" not in str(caught.value)


def test_every_truncation_of_a_real_row_is_undecodable() -> None:
    payload = valid_payloads()[0]
    for end in range(len(payload)):
        with pytest.raises(UndecodableJob):
            decode_job_state(payload[:end])


class Packed:
    """Pickles as a datetime, date or time built from packed bytes, as every real row does,
    with bytes changed (``{index: byte}``): CPython checks only the month of such bytes, so the
    pickle can carry a value no Python code can create."""

    def __init__(self, value: Any, changes: dict[int, int]) -> None:
        cls, (data, *rest) = value.__reduce__()
        patched = bytearray(data)
        for index, byte in changes.items():
            patched[index] = byte
        self.reduced = (cls, (bytes(patched), *rest))

    def __reduce__(self) -> Any:
        return self.reduced


LATER = datetime(2030, 2, 28, 12, tzinfo=UTC)
IMPOSSIBLE = {
    "year 0": Packed(LATER, {0: 0, 1: 0}),
    "31 February": Packed(LATER, {3: 31}),
    "hour 255": Packed(LATER, {4: 255}),
    "minute 99": Packed(LATER, {5: 99}),
}


@pytest.mark.parametrize("moment", IMPOSSIBLE.values(), ids=IMPOSSIBLE.keys())
@pytest.mark.parametrize("place", ["run_date", "next_run_time", "start_date", "kwargs"])
def test_impossible_datetimes_are_undecodable(moment: Packed, place: str) -> None:
    if place == "run_date":
        state = make_state(trigger=DateTrigger(LATER))
        state["trigger"].run_date = moment
    elif place == "start_date":
        state = make_state(trigger=IntervalTrigger(hours=1, start_date=LATER, timezone=UTC))
        state["trigger"].start_date = moment
    else:
        state = make_state(**{place: moment if place == "next_run_time" else {"when": moment}})
    with pytest.raises(UndecodableJob, match="impossible date or time"):
        decode_job_state(pickle.dumps(state, 5))


def test_impossible_dates_and_times_of_day_are_undecodable() -> None:
    def monthly() -> CalendarIntervalTrigger:
        return CalendarIntervalTrigger(months=1, hour=4, timezone=UTC, start_date="2025-01-31")

    state = make_state(trigger=monthly())
    state["trigger"].start_date = Packed(date(2025, 1, 31), {3: 32})
    for broken in (state, make_state(kwargs={"at": Packed(time_of_day(4, 0), {1: 60})})):
        with pytest.raises(UndecodableJob, match="impossible date or time"):
            decode_job_state(pickle.dumps(broken, 5))
    # Real values decode, a time of day and the second 02:30 of a fall-back night included.
    folded = datetime(2025, 10, 26, 2, 30, tzinfo=BERLIN, fold=1)
    valid = make_state(trigger=monthly(), next_run_time=folded, kwargs={"at": time_of_day(4, 0)})
    decoded = decode_job_state(pickle.dumps(valid, 5))
    assert decoded.next_run_time == folded and decoded.next_run_time.fold == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "state,reason",
    [
        ([1, 2], "not a dict"),
        (None, "not a dict"),
        ("job", "not a dict"),
        (IntervalTrigger(hours=1, timezone=UTC), "not a dict"),
        ({"version": 1}, "no string id"),
        (make_state(id=7), "no string id"),
        (make_state(version=2), "unsupported version"),
        (make_state(trigger=None), "trigger"),
        (make_state(trigger="cron"), "trigger"),
        (make_state(trigger=Worker("not a trigger")), "trigger"),
        (make_state(name=3), "name"),
        (make_state(executor=None), "executor"),
        (make_state(misfire_grace_time="1"), "misfire_grace_time"),
        (make_state(misfire_grace_time=-1), "misfire_grace_time"),
        (make_state(misfire_grace_time=float("nan")), "misfire_grace_time"),
        (make_state(coalesce="yes"), "coalesce"),
        (make_state(max_instances=0), "max_instances"),
        (make_state(max_instances=True), "max_instances"),
        (make_state(next_run_time=datetime(2030, 1, 1)), "next_run_time"),
        (make_state(next_run_time=1234.5), "next_run_time"),
        (make_state(args="abc"), "args"),
        (make_state(kwargs=[1]), "args"),
    ],
)
def test_wrong_shapes_and_field_types_are_undecodable(state: Any, reason: str) -> None:
    with pytest.raises(UndecodableJob, match=reason):
        decode_job_state(pickle.dumps(state, 5))


def test_absent_optional_fields_take_apscheduler_defaults() -> None:
    state = {"id": "bare", "trigger": IntervalTrigger(hours=1, timezone=UTC)}
    job = decode_job_state(pickle.dumps(state, 5))
    assert (job.name, job.func, job.executor, job.next_run_time) == (None, None, "default", None)
    assert (job.misfire_grace_time, job.coalesce, job.max_instances) == (1.0, True, 1)


def broken_cron(mutate: Callable[[Any], None]) -> bytes:
    trigger = CronTrigger(day="1st mon", month="jan-mar", hour="8-18/2", timezone=UTC)
    mutate(trigger)
    return pickle.dumps(make_state(trigger=trigger), 5)


def field(trigger: Any, name: str) -> Any:
    return trigger.fields[CronTrigger.FIELD_NAMES.index(name)]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: setattr(t, "timezone", "Europe/Nowhere"),
        lambda t: setattr(t, "fields", t.fields[:7]),
        lambda t: t.fields.reverse(),
        lambda t: setattr(field(t, "hour"), "expressions", []),
        lambda t: setattr(field(t, "hour").expressions[0], "first", "8"),
        lambda t: setattr(field(t, "hour").expressions[0], "step", 0),
        lambda t: setattr(field(t, "hour").expressions[0], "last", 99),
        lambda t: setattr(field(t, "day").expressions[0], "option_num", 9),
        lambda t: setattr(field(t, "day").expressions[0], "extra", 1),
        lambda t: field(t, "month").expressions.append(ex.WeekdayPositionExpression("1st", "mon")),
        lambda t: t.fields.append(fl.BaseField("second", "*")),
        lambda t: setattr(t, "jitter", -5),
        lambda t: setattr(t, "start_date", datetime(2025, 1, 1)),
    ],
)
def test_cron_triggers_apscheduler_could_not_have_written(mutate: Callable[[Any], None]) -> None:
    with pytest.raises(UndecodableJob):
        decode_job_state(broken_cron(mutate))


@pytest.mark.parametrize(
    "trigger",
    [
        IntervalTrigger.__new__(IntervalTrigger),  # no state at all
        DateTrigger.__new__(DateTrigger),
        AndTrigger([]),
        OrTrigger([Worker("not a trigger")]),  # type: ignore[list-item]
    ],
    ids=["interval_empty", "date_empty", "and_empty", "or_of_object"],
)
def test_incomplete_triggers_are_undecodable(trigger: BaseTrigger) -> None:
    with (
        mock.patch.object(IntervalTrigger, "__getstate__", lambda self: {"version": 2}),
        mock.patch.object(DateTrigger, "__getstate__", lambda self: {"version": 1}),
    ):
        data = pickle.dumps(make_state(trigger=trigger), 5)
    with pytest.raises(UndecodableJob):
        decode_job_state(data)


def test_reasons_never_echo_the_payload(sentinel: Path) -> None:
    marker = "SECRET-PAYLOAD-TEXT"
    cases: list[Any] = [
        make_state(id=marker.encode()),
        make_state(trigger=marker),
        make_state(name=[marker]),
        [marker],
        make_state(trigger=CronTrigger(hour=1, timezone=UTC), next_run_time=marker),
    ]
    for state in cases:
        with pytest.raises(UndecodableJob) as caught:
            decode_job_state(pickle.dumps(state, 5))
        assert marker not in str(caught.value)
    forged = forged_combining([f"{marker}:Trigger"], True)
    with mock.patch.object(BaseCombiningTrigger, "__getstate__", lambda self: forged):
        data = pickle.dumps(make_state(trigger=OrTrigger([])), 5)
    with pytest.raises(UndecodableJob) as caught:
        decode_job_state(data)
    assert marker not in str(caught.value)
    with pytest.raises(UndecodableJob) as caught:
        decode_job_state(valid_payloads()[0].replace(b"Europe/Berlin", b"Europe/Nowher"))
    assert "zone" in str(caught.value) and "Nowher" not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Fuzzing
# ---------------------------------------------------------------------------------------------


def assert_decodes_or_refuses(data: bytes) -> None:
    modules = len(sys.modules)
    try:
        result = decode_job_state(data)
    except UndecodableJob as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert type(result) is DecodedJob
    assert len(sys.modules) == modules, "decoding imported a module"


@pytest.fixture(scope="module")
def untouched() -> Iterator[None]:
    """Fuzzing must leave the allowlisted classes exactly as they were."""
    classes = class_snapshot()
    yield
    assert class_snapshot() == classes


FUZZ = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_fuzz_random_bytes(untouched: None, data: bytes) -> None:
    assert_decodes_or_refuses(data)
    assert_decodes_or_refuses(b"\x80\x05" + data)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 16)),
    st.tuples(st.just("copy"), st.integers(0, 1 << 16), st.integers(1, 64)),
)


@FUZZ
@given(index=st.integers(0, len(SAMPLE_TRIGGERS) - 1), mutations=st.lists(mutation, max_size=6))
def test_fuzz_mutated_real_rows(untouched: None, index: int, mutations: list[tuple]) -> None:
    data = bytearray(valid_payloads()[index])
    for kind, position, value in mutations:
        at = position % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] = value
        elif kind == "insert":
            data[at:at] = value
        elif kind == "delete":
            del data[at : at + value]
        elif kind == "copy":
            data[at:at] = data[at : at + value]
    assert_decodes_or_refuses(bytes(data))
