"""The recorder against real schedulers, executors and databases: rows match what happened."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.executors.pool import ProcessPoolExecutor, ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler
from kit_helpers import EventCounter, history, per_job_counts, status_counts, wait_for

from exporter.kit import instrument

NAP = 0.15  # seconds a "slow" job sleeps


def nap() -> float:
    """Sleep; return the time it really took, as the job itself measured it."""
    began = time.perf_counter()
    time.sleep(NAP)
    return time.perf_counter() - began


def boom() -> None:
    raise ValueError("boom went the job")


def quick() -> None:
    pass


def assert_duration(row: dict, slept: float, measured: list[float]) -> None:
    """At least the sleep, and within 20 ms of what the job measured itself (on a loaded
    machine a sleep can overrun; the recorder must still time the real run)."""
    assert row["duration_ms"] is not None
    assert row["duration_ms"] >= slept * 1000 - 1, row
    assert min(abs(row["duration_ms"] - m * 1000) for m in measured) <= 20, (row, measured)


def test_background_scheduler_rows_match_events(any_db):
    now = datetime.now(UTC)
    scheduler = BackgroundScheduler(timezone="UTC")
    counter = EventCounter(scheduler)
    recorder = instrument(scheduler, any_db.url, retention_days=None)
    scheduler.add_job(nap, id="nap", name="Nap a while")
    scheduler.add_job(boom, id="boom")
    scheduler.add_job(
        quick, "date", run_date=now - timedelta(seconds=30), id="late", misfire_grace_time=1
    )
    scheduler.add_job(nap, "interval", seconds=0.05, id="overlap", max_instances=1)
    # One submission with a backlog of six run times: four too late, two run one after another.
    scheduler.add_job(
        quick,
        "interval",
        seconds=1,
        id="backlog",
        coalesce=False,
        misfire_grace_time=2,
        next_run_time=now - timedelta(seconds=5.5),
    )
    scheduler.start()
    wait_for(
        lambda: counter.counts["skipped"] >= 3 and counter.counts["success"] >= 5,
        what="runs and skips",
    )
    scheduler.shutdown(wait=True)  # flushes before returning

    engine = any_db.engine()
    rows = history(engine)
    assert per_job_counts(rows) == counter.per_job
    assert status_counts(rows)["running"] == 0
    assert recorder.stats().pending == 0

    (nap_row,) = [r for r in rows if r["job_id"] == "nap"]
    assert nap_row["status"] == "success"
    assert nap_row["job_name"] == "Nap a while"
    assert_duration(nap_row, NAP, counter.retvals["nap"])
    assert nap_row["started_at"] <= nap_row["finished_at"]
    assert nap_row["host"] and nap_row["pid"] == os.getpid()
    assert nap_row["scheduler_id"] == recorder.scheduler_id
    assert 0 < len(nap_row["run_id"]) <= 36

    (boom_row,) = [r for r in rows if r["job_id"] == "boom"]
    assert boom_row["status"] == "failed"
    assert boom_row["error_message"] == "ValueError: boom went the job"
    assert "in boom" in boom_row["traceback"] and "exporter/kit" not in boom_row["traceback"]

    (late_row,) = [r for r in rows if r["job_id"] == "late"]
    assert late_row["status"] == "missed"
    assert late_row["started_at"] is None and late_row["duration_ms"] is None
    assert abs(
        late_row["scheduled_run_time"] - (now - timedelta(seconds=30)).replace(tzinfo=None)
    ) < timedelta(seconds=1)

    overlap = [r for r in rows if r["job_id"] == "overlap"]
    assert {r["status"] for r in overlap} == {"success", "skipped"}
    for row in overlap:
        if row["status"] == "success":
            assert_duration(row, NAP, counter.retvals["overlap"])

    backlog = sorted(
        (r for r in rows if r["job_id"] == "backlog"), key=lambda r: r["scheduled_run_time"]
    )
    assert [r["status"] for r in backlog[:6]] == ["missed"] * 4 + ["success"] * 2
    assert len({r["scheduled_run_time"] for r in backlog}) == len(backlog)


def test_running_row_visible_while_the_job_runs(any_db):
    release = threading.Event()
    scheduler = BackgroundScheduler(timezone="UTC")
    recorder = instrument(scheduler, any_db.url)
    scheduler.add_job(release.wait, args=[10], id="held")
    scheduler.start()
    engine = any_db.engine()
    try:
        (row,) = wait_for(
            lambda: [r for r in history(engine) if r["status"] == "running"], what="a running row"
        )
        assert row["job_id"] == "held" and row["started_at"] is not None
        assert row["finished_at"] is None and row["duration_ms"] is None
        release.set()
        wait_for(
            lambda: [r["status"] for r in history(engine)] == ["success"], what="the row to finish"
        )
        assert history(engine)[0]["run_id"] == row["run_id"]  # updated in place
    finally:
        release.set()
        scheduler.shutdown()
    assert recorder.stats().written >= 2


async def test_asyncio_scheduler_coroutines_and_threads(any_db):
    scheduler = AsyncIOScheduler(timezone="UTC")
    counter = EventCounter(scheduler)
    instrument(scheduler, any_db.url)

    async def anap():
        began = time.perf_counter()
        await asyncio.sleep(NAP)
        return time.perf_counter() - began

    async def aboom():
        await asyncio.sleep(0)
        raise KeyError("missing")

    scheduler.add_job(anap, id="anap")
    scheduler.add_job(aboom, id="aboom")
    scheduler.add_job(nap, id="thread-nap")  # a plain function: the loop's thread pool
    scheduler.add_job(anap, "interval", seconds=0.04, id="aoverlap", max_instances=1)
    scheduler.start()
    deadline = time.monotonic() + 10
    while not (counter.counts["skipped"] >= 2 and counter.counts["success"] >= 3):
        assert time.monotonic() < deadline, counter.counts
        await asyncio.sleep(0.02)
    scheduler.remove_job("aoverlap")
    executor = scheduler._lookup_executor("default")
    while executor._instances:  # a run still going at shutdown would be cancelled mid-way
        assert time.monotonic() < deadline, executor._instances
        await asyncio.sleep(0.02)
    scheduler.shutdown()
    await asyncio.sleep(0)  # AsyncIOScheduler shuts down (and the kit flushes) on the loop

    rows = history(any_db.engine())
    assert per_job_counts(rows) == counter.per_job
    by_job = {r["job_id"]: r for r in rows if r["status"] != "skipped"}
    assert_duration(by_job["anap"], NAP, counter.retvals["anap"])
    assert_duration(by_job["thread-nap"], NAP, counter.retvals["thread-nap"])
    assert by_job["aboom"]["status"] == "failed"
    assert by_job["aboom"]["error_message"] == "KeyError: 'missing'"


async def test_asyncio_running_row_for_a_coroutine(sqlite_db):
    scheduler = AsyncIOScheduler(timezone="UTC")
    instrument(scheduler, sqlite_db.url)
    gate = asyncio.Event()

    async def held():
        await gate.wait()

    scheduler.add_job(held, id="held")
    scheduler.start()
    engine = sqlite_db.engine()
    deadline = time.monotonic() + 10
    while not [r for r in history(engine) if r["status"] == "running"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    gate.set()
    while [r["status"] for r in history(engine)] != ["success"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    scheduler.shutdown()
    await asyncio.sleep(0)


def test_process_pool_times_runs_in_the_child(sqlite_db):
    scheduler = BackgroundScheduler(
        timezone="UTC", executors={"default": ProcessPoolExecutor(max_workers=2)}
    )
    counter = EventCounter(scheduler)
    instrument(scheduler, sqlite_db.url)
    # Starting the children can take a while on a busy machine: no misfire limit here.
    scheduler.add_job("kit_procjobs:nap", args=[0.3], id="pnap", misfire_grace_time=None)
    scheduler.add_job(
        "kit_procjobs:explode", args=["child failed"], id="pboom", misfire_grace_time=None
    )
    scheduler.start()
    engine = sqlite_db.engine()
    try:
        wait_for(lambda: counter.total() >= 2, timeout=30, what="both process pool runs")
    finally:
        scheduler.shutdown()
    rows = {r["job_id"]: r for r in history(engine)}
    assert per_job_counts(list(rows.values())) == counter.per_job
    assert rows["pnap"]["status"] == "success"
    assert_duration(rows["pnap"], 0.3, counter.retvals["pnap"])
    assert rows["pnap"]["pid"] != os.getpid()  # where the run happened
    assert rows["pboom"]["status"] == "failed"
    assert rows["pboom"]["error_message"] == "RuntimeError: child failed"
    assert "in explode" in rows["pboom"]["traceback"]


def test_instrument_after_start_and_executor_added_later(sqlite_db):
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    counter = EventCounter(scheduler)
    instrument(scheduler, sqlite_db.url)
    scheduler.add_executor(ThreadPoolExecutor(2), "extra")
    scheduler.add_job(nap, id="default-pool")
    scheduler.add_job(nap, id="extra-pool", executor="extra")
    wait_for(lambda: counter.total() == 2, what="two runs")
    scheduler.shutdown()
    rows = history(sqlite_db.engine())
    assert per_job_counts(rows) == counter.per_job
    for row in rows:
        assert_duration(row, NAP, counter.retvals[row["job_id"]])


class HomegrownExecutor(ThreadPoolExecutor):
    """An executor with its own submission: the recorder cannot time it."""

    def _do_submit_job(self, job, run_times):
        super()._do_submit_job(job, run_times)


def test_unknown_executor_falls_back_to_events(sqlite_db):
    scheduler = BackgroundScheduler(timezone="UTC", executors={"default": HomegrownExecutor(2)})
    counter = EventCounter(scheduler)
    recorder = instrument(scheduler, sqlite_db.url)
    assert recorder.fallback_executors == ["default"]
    scheduler.add_job(quick, id="ok")
    scheduler.add_job(boom, id="bad")
    scheduler.start()
    wait_for(lambda: counter.total() == 2, what="two runs")
    scheduler.shutdown()
    rows = {r["job_id"]: r for r in history(sqlite_db.engine())}
    assert rows["ok"]["status"] == "success" and rows["ok"]["started_at"] is None
    assert rows["ok"]["finished_at"] is not None
    assert rows["bad"]["error_message"] == "ValueError: boom went the job"


@pytest.mark.parametrize("jobstore, expected", [("default", {"mine"}), (None, {"mine", "other"})])
def test_only_the_instrumented_job_store_is_recorded(sqlite_db, jobstore, expected):
    scheduler = BackgroundScheduler(
        timezone="UTC", jobstores={"default": MemoryJobStore(), "scratch": MemoryJobStore()}
    )
    counter = EventCounter(scheduler)
    instrument(scheduler, sqlite_db.url, jobstore=jobstore)
    scheduler.add_job(quick, id="mine")
    scheduler.add_job(quick, id="other", jobstore="scratch")
    scheduler.start()
    wait_for(lambda: counter.total() == 2, what="two runs")
    scheduler.shutdown()
    assert {r["job_id"] for r in history(sqlite_db.engine())} == expected


def test_schema_and_table_names(pg_db):
    scheduler = BackgroundScheduler(timezone="UTC")
    counter = EventCounter(scheduler)
    instrument(
        scheduler, pg_db.url, schema="scheduler", history_table="runs", heartbeat_table="beats"
    )
    scheduler.add_job(quick, id="ok")
    scheduler.start()
    wait_for(lambda: counter.total() == 1, what="a run")
    scheduler.shutdown()
    engine = pg_db.engine()
    assert [r["status"] for r in history(engine, table="runs", schema="scheduler")] == ["success"]


def test_recording_never_breaks_jobs_when_the_database_is_gone(caplog):
    url = "postgresql://app:s3cr3t-pw@127.0.0.1:1/nowhere"
    scheduler = BackgroundScheduler(timezone="UTC")
    counter = EventCounter(scheduler)
    recorder = instrument(scheduler, url, shutdown_timeout=0.5)
    scheduler.add_job(quick, id="ok")
    scheduler.start()
    wait_for(lambda: counter.counts["success"] == 1, what="the job to run anyway")
    wait_for(lambda: recorder.stats().write_errors > 0, what="a failed write")
    scheduler.shutdown()
    recorder.close(timeout=0.2)
    assert recorder.stats().pending == 1  # still buffered, never silently dropped
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "s3cr3t-pw" not in text
    assert "app:***@127.0.0.1:1" in caplog.text


def test_unparsable_url_error_hides_the_password():
    with pytest.raises(ValueError) as info:
        instrument(BackgroundScheduler(), "postgresql://app:s3cr3t-pw@host:notaport/db")
    assert "s3cr3t-pw" not in str(info.value)
