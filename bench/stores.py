"""Realistic job stores of any size, written fast.

1. A real ``BackgroundScheduler`` (started paused) adds ``TEMPLATES`` real jobs to a real
   ``SQLAlchemyJobStore``: cron (plain, weekday ranges, steps, time zones, jitter), interval
   (seconds to days), date, AndTrigger, OrTrigger and calendar-interval triggers; plain
   functions, bound methods of app objects (the instance lands in ``args``), app objects and
   plain data as arguments; one job in seven paused.
2. The store is then grown to N rows by replication: each new row is a template's own
   ``Job.__getstate__()`` with a new id, pickled the way ``SQLAlchemyJobStore.add_job`` pickles
   it, and inserted with bulk SQLAlchemy Core inserts (one ``add_job`` per row would take
   minutes at 100k rows). Copies of interval and date jobs are shifted by up to an hour (trigger
   start and ``next_run_time`` together, so each copy has a schedule of its own); copies of cron,
   and/or and calendar jobs share their template's schedule.
3. The kit's tables are created as an app using ``create_scheduler`` has them: a heartbeat row
   and one finished run in ``job_execution`` for some of the jobs.

    python -m bench.stores URL N        # build one store and print what it holds
"""

from __future__ import annotations

import copy
import pickle
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

try:
    from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
except ImportError:  # APScheduler 3.10
    CalendarIntervalTrigger = None  # type: ignore[assignment,misc]

from bench.sample_jobs import ReportSpec, TenantSync
from exporter.shared.tables import heartbeat_table, history_table

TEMPLATES = 300
PAUSE_EVERY = 7
CHUNK = 5_000
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")


def template_jobs(count: int = TEMPLATES) -> list[dict[str, Any]]:
    """``count`` add_job() argument sets, mixed the way a large app's jobs are."""
    now = datetime.now(UTC)
    specs: list[dict[str, Any]] = []
    for i in range(count):
        zone = ZONES[i % len(ZONES)]
        kind = i % 12
        trigger: Any
        if kind == 0:
            trigger = CronTrigger(hour=i % 24, minute=(i * 7) % 60, timezone=zone)
        elif kind == 1:
            trigger = CronTrigger(day_of_week="mon-fri", hour="8-18", minute="*/15", timezone=zone)
        elif kind == 2:
            trigger = CronTrigger(minute=f"*/{5 + i % 25}", jitter=30, timezone=zone)
        elif kind == 3:
            trigger = CronTrigger(day="1,15", hour=3, timezone=zone)
        elif kind == 4:
            trigger = CronTrigger.from_crontab(f"{i % 60} {i % 24} * * {i % 7}", timezone=zone)
        elif kind == 5:
            trigger = IntervalTrigger(seconds=30 + i % 90, timezone=zone)
        elif kind == 6:
            trigger = IntervalTrigger(minutes=5 + i % 55, timezone=zone)
        elif kind == 7:
            trigger = IntervalTrigger(hours=1 + i % 23, start_date=now, timezone=zone)
        elif kind == 8:
            trigger = DateTrigger(run_date=now + timedelta(days=1 + i % 30), timezone=zone)
        elif kind == 9:
            trigger = AndTrigger(
                [
                    CronTrigger(day_of_week="mon-fri", hour="*/2", minute=0, timezone=zone),
                    CronTrigger(hour="8-20", minute=0, timezone=zone),
                ]
            )
        elif kind == 10:
            trigger = OrTrigger(
                [CronTrigger(hour=3, timezone=zone), CronTrigger(hour=15, minute=30, timezone=zone)]
            )
        elif CalendarIntervalTrigger is not None:
            trigger = CalendarIntervalTrigger(
                months=1, hour=4, start_date=(now + timedelta(days=2)).date(), timezone=zone
            )
        else:  # pragma: no cover - APScheduler 3.10
            trigger = CronTrigger(day=1, hour=4, timezone=zone)
        spec: dict[str, Any] = {"trigger": trigger, "id": f"t{i:04d}", "name": f"Job {i}"}
        style = i % 5
        if style == 0:
            spec["func"] = TenantSync(f"tenant-{i}", batch=100 + i).run  # instance in args
        elif style == 1:
            spec["func"] = "bench.sample_jobs:build_report"
            spec["args"] = (ReportSpec(f"Report {i}", ["date", "amount", "tenant"]),)
        elif style == 2:
            spec["func"] = "bench.sample_jobs:send_report"
            spec["args"] = (f"team-{i}@example.com",)
            spec["kwargs"] = {"fmt": "csv" if i % 2 else "pdf"}
        else:
            spec["func"] = "bench.sample_jobs:noop"
        if i % 3 == 0:
            spec["misfire_grace_time"] = 300
        elif i % 3 == 1:
            spec["misfire_grace_time"] = None  # unlimited
        if i % 4 == 0:
            spec.update(coalesce=True, max_instances=1)
        specs.append(spec)
    return specs


def build_store(url: str, jobs: int, *, templates: int = TEMPLATES) -> dict[str, Any]:
    """Drop and write ``apscheduler_jobs`` (``jobs`` rows) and the kit's tables at ``url``."""
    started = time.perf_counter()
    writer = sa.create_engine(url)
    kit = sa.MetaData()
    history = history_table(kit)
    beats = heartbeat_table(kit)
    with writer.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS apscheduler_jobs"))
    kit.drop_all(writer)

    count = min(templates, jobs)
    store = SQLAlchemyJobStore(engine=writer)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)
    try:
        for spec in template_jobs(count):
            scheduler.add_job(**spec)
        for i, job in enumerate(scheduler.get_jobs()):
            if i % PAUSE_EVERY == PAUSE_EVERY - 1:
                job.pause()
        real = store.get_all_jobs()  # Job objects as the store restores them
    finally:
        scheduler.shutdown(wait=False)
    real_seconds = time.perf_counter() - started

    rows: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    with writer.begin() as conn:
        for n in range(count, jobs):
            state = real[n % count].__getstate__()
            state["id"] = f"job_{n:06d}"
            state["trigger"], shift = _shifted(state["trigger"], n)
            next_run = state["next_run_time"]
            if next_run is not None:
                next_run = next_run + shift
                state["next_run_time"] = next_run
            rows.append(
                {
                    "id": state["id"],
                    "next_run_time": next_run.timestamp() if next_run is not None else None,
                    "job_state": pickle.dumps(state, store.pickle_protocol),
                }
            )
            if len(rows) == CHUNK:
                conn.execute(store.jobs_t.insert(), rows)
                rows = []
        if rows:
            conn.execute(store.jobs_t.insert(), rows)
    for n in range(jobs):
        job = real[n % count]
        kinds[type(job.trigger).__name__] += 1
        kinds["paused"] += job.next_run_time is None

    kit.create_all(writer)
    ids = [row[0] for row in _all_ids(writer)]
    moment = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    with writer.begin() as conn:
        conn.execute(
            beats.insert(),
            [{"scheduler_id": "bench", "host": "bench", "pid": 1, "state": "running",
              "started_at": moment, "last_seen": datetime.now(UTC).replace(tzinfo=None)}],
        )  # fmt: skip
        batch = []
        for n, job_id in enumerate(ids[::10]):  # one finished run for one job in ten
            batch.append(
                {"job_id": job_id, "status": "failed" if n % 13 == 0 else "success",
                 "scheduled_run_time": moment, "started_at": moment,
                 "finished_at": moment + timedelta(seconds=2), "duration_ms": 2000.0}
            )  # fmt: skip
        if batch:
            conn.execute(history.insert(), batch)
    writer.dispose()
    return {
        "jobs": jobs,
        "real_jobs": count,
        "real_seconds": round(real_seconds, 2),
        "build_seconds": round(time.perf_counter() - started, 2),
        "mix": dict(sorted(kinds.items())),
    }


def _shifted(trigger: Any, n: int) -> tuple[Any, timedelta]:
    """The trigger of a job added a little later: interval and date triggers move with their
    start (so the copies' schedules differ, as they do for jobs added at different moments); cron
    and combined triggers keep their template's schedule, as copies of one job per tenant do."""
    shift = timedelta(seconds=(n * 7919) % 3600, microseconds=(n * 104729) % 1_000_000)
    if isinstance(trigger, IntervalTrigger):
        trigger = copy.copy(trigger)
        trigger.start_date = trigger.start_date + shift
        return trigger, shift
    if isinstance(trigger, DateTrigger):
        trigger = copy.copy(trigger)
        trigger.run_date = trigger.run_date + shift
        return trigger, shift
    return trigger, timedelta(0)


def _all_ids(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT id FROM apscheduler_jobs ORDER BY id")))


def change_states(url: str, fraction: float = 0.01, *, round_: int = 1) -> int:
    """Rewrite the ``job_state`` bytes of ``fraction`` of the rows, as a scheduler that modified
    those jobs (renamed them) would; returns how many rows changed."""
    engine = sa.create_engine(url)
    table = SQLAlchemyJobStore(engine=engine).jobs_t
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.id, table.c.job_state)).all()
        step = max(1, round(1 / fraction))
        picked = rows[round_ % step :: step]
        updates = []
        for job_id, raw in picked:
            state = pickle.loads(raw)  # our own rows, written above
            state["name"] = f"{state['name']} (edited {round_})"
            updates.append({"b_id": job_id, "state": pickle.dumps(state, pickle.HIGHEST_PROTOCOL)})
        with engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.id == sa.bindparam("b_id"))
                .values(job_state=sa.bindparam("state")),
                updates,
            )
        return len(updates)
    finally:
        engine.dispose()


if __name__ == "__main__":
    info = build_store(sys.argv[1], int(sys.argv[2]))
    print(info)
