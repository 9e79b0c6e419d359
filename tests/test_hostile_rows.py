"""Rows built only from allowed classes that used to crash, freeze or stall the sidecar.

Each row is written into a real store (by a real APScheduler where one can write it, by SQL
where only a crafted row has the shape), then read by the real sidecar and scraped over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from apscheduler.triggers.combining import AndTrigger, BaseCombiningTrigger, OrTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pages_support import Runs
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families
from stores import SEED_JOBS, write_jobs
from support import Database

from exporter.shared.tables import heartbeat_table, history_table
from exporter.sidecar.config import load_config
from exporter.sidecar.poller import StorePoller
from exporter.sidecar.serving.server import SIDECAR, create_app
from exporter.sidecar.snapshot import JobView

OPENMETRICS = "application/openmetrics-text;version=1.0.0"
LONE = "\ud800"  # a lone surrogate: pickle keeps it (surrogatepass), UTF-8 cannot encode it


class Running:
    """The real aiohttp app on a loopback port; the test decides when polls happen."""

    def __init__(self, server: TestServer, pollers: list[StorePoller]) -> None:
        self.server = server
        self.pollers = pollers

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def poll(self) -> None:
        for poller in self.pollers:
            await asyncio.to_thread(poller.poll)
        await self.server.app[SIDECAR].bodies.refresh()

    async def get(self, path: str, accept: str = "") -> tuple[int, str]:
        headers = {"Accept": accept} if accept else {}
        async with ClientSession() as session, session.get(self.url(path), headers=headers) as r:
            return r.status, await r.text()

    async def samples(self, accept: str = "") -> dict[tuple[str, frozenset[tuple[str, str]]], Any]:
        status, text = await self.get("/metrics", accept)
        assert status == 200, text
        parse = parse_om if accept == OPENMETRICS else text_string_to_metric_families
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in parse(text)
            for s in family.samples
        }


async def serve(url: str, pollers: list[StorePoller] | None = None) -> AsyncIterator[Running]:
    config = load_config(db_url=url, poll_interval=3600)
    pollers = pollers or [StorePoller(store) for store in config.stores]
    server = TestServer(create_app(config, pollers))
    await server.start_server()
    try:
        yield Running(server, pollers)
    finally:
        await server.close()


def info(samples: dict[tuple[str, frozenset[tuple[str, str]]], Any], job_id: str) -> dict[str, str]:
    found = [
        dict(labels)
        for name, labels in samples
        if name == "apscheduler_job_info" and ("job_id", job_id) in labels
    ]
    assert len(found) == 1, found
    return found[0]


def value(samples: dict[Any, Any], name: str, **labels: str) -> Any:
    return samples.get((name, frozenset(labels.items())))


JOBS_TABLE = sa.Table(
    "apscheduler_jobs",
    sa.MetaData(),
    sa.Column("id", sa.Unicode(191)),
    sa.Column("next_run_time", sa.Float),
    sa.Column("job_state", sa.LargeBinary),
)


def insert_row(db: Database, job_id: str, state: bytes, next_run: float | None = None) -> None:
    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(JOBS_TABLE.insert().values(id=job_id, next_run_time=next_run, job_state=state))
    engine.dispose()


def job_state(job_id: str, trigger: Any, **fields: Any) -> bytes:
    """A job state as APScheduler pickles it, for a trigger APScheduler cannot be given."""
    state = {
        "version": 1, "id": job_id, "func": "sample_jobs:noop", "trigger": trigger,
        "executor": "default", "args": (), "kwargs": {}, "name": job_id,
        "misfire_grace_time": None, "coalesce": True, "max_instances": 1, "next_run_time": None,
    }  # fmt: skip
    return pickle.dumps({**state, **fields}, 5)


# --- Text no encoder accepts ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_lone_surrogate_in_a_name_never_freezes_metrics(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """A real scheduler stores a job named with a lone surrogate. Every page must keep
    answering, and new polls must keep showing (text /metrics used to serve its last good body
    for ever, OpenMetrics, / and /api/status answered 500)."""
    db: Database = request.getfixturevalue("sqlite_db" if kind == "sqlite" else "pg_db")
    write_jobs(db.url)
    async for running in serve(db.url):
        await running.poll()
        await running.samples()  # a good body exists, as in a sidecar that ran before
        await running.samples(OPENMETRICS)
        write_jobs(
            db.url,
            [
                {
                    "func": "sample_jobs:noop",
                    "trigger": IntervalTrigger(hours=1),
                    "id": "odd",
                    "name": f"nightly {LONE} report",
                    "executor": f"pool{LONE}",
                }
            ],
        )
        with caplog.at_level(logging.WARNING):
            await running.poll()
        for accept in ("", OPENMETRICS):
            samples = await running.samples(accept)
            labels = info(samples, "odd")  # the new poll is served, not the old body
            assert labels["name"] == "nightly \ufffd report"
            assert labels["executor"] == "pool\ufffd"
            assert value(samples, "jobstore_exporter_jobs_text_replaced", jobstore="default") == 1
        for path in ("/", "/api/status", "/readyz"):
            status, text = await running.get(path)
            assert status == 200, (path, text)
        assert "nightly \ufffd report" in (await running.get("/api/status"))[1]
    logged = [r.getMessage() for r in caplog.records if "not valid Unicode" in r.getMessage()]
    assert len(logged) == 1 and "'odd'" in logged[0] and "name, executor" in logged[0]


class Publishing(StorePoller):
    """A poller that publishes a snapshot past the sources (which replace such text), standing
    in for any future bug that hands a renderer something it cannot encode."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inject: JobView | None = None

    def poll(self) -> Any:
        snapshot = super().poll()
        if self.inject is not None:
            self.snapshot = snapshot = type(snapshot)(
                **{
                    **{f: getattr(snapshot, f) for f in snapshot.__dataclass_fields__},
                    "jobs": (*snapshot.jobs, self.inject),
                }
            )
        return snapshot


async def test_a_failed_render_is_loud(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    write_jobs(sqlite_db.url)
    config = load_config(db_url=sqlite_db.url, poll_interval=3600)
    poller = Publishing(config.stores[0])
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    async for running in serve(sqlite_db.url, [poller]):
        await running.poll()
        good = await running.samples()
        assert value(good, "jobstore_exporter_render_errors_total", part="static") == 0
        poller.inject = JobView(id="bad", next_run_time=None, decoded=True, name=LONE)
        with caplog.at_level(logging.ERROR):
            await running.poll()
            samples = await running.samples()  # the last good body, and a fresh clock part
            assert value(samples, "jobstore_exporter_render_errors_total", part="static") == 1
            status, text = await running.get("/readyz")
            assert status == 503 and "rendering the static part of /metrics" in text, text
            assert "UnicodeEncodeError" in text and "\n" not in text.rstrip("\n")
            # A new poll retries once; scrapes meanwhile do not re-render and re-log.
            await running.samples()
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(logged) == 1 and "rendering the static part" in logged[0], logged
        # The first render of another format has no good body to fall back on: a one-line 500.
        status, text = await running.get("/metrics", OPENMETRICS)
        assert status == 500 and text.startswith("rendering /metrics failed: UnicodeEncodeError")

        poller.inject = None
        await running.poll()
        assert (await running.get("/readyz"))[0] == 200
        samples = await running.samples()
        # One failure per format (text, then OpenMetrics); none since.
        assert value(samples, "jobstore_exporter_render_errors_total", part="static") == 2
        assert info(await running.samples(OPENMETRICS), "database_backup")
        await asyncio.sleep(0.1)  # let every render future finish and be collected
    assert not loop_errors, loop_errors  # "Task exception was never retrieved" and the like


# --- Rows that fail alone -------------------------------------------------------------------


def test_an_invalid_utf8_job_id_fails_its_row_only(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    write_jobs(sqlite_db.url)
    state = job_state("x", IntervalTrigger(hours=1, timezone=UTC))
    with sqlite3.connect(sqlite_db.url.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "INSERT INTO apscheduler_jobs VALUES (CAST(X'6A6F62FF' AS TEXT), ?, ?)",
            (time.time() + 60, state),
        )
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0])
    with caplog.at_level(logging.WARNING):
        snapshot = poller.poll()
    poller.close()
    assert snapshot.up and snapshot.undecodable == 1
    jobs = {job.id: job for job in snapshot.jobs}
    assert set(jobs) == {job["id"] for job in SEED_JOBS} | {"job\\xff"}
    assert not jobs["job\\xff"].decoded and jobs["job\\xff"].next_run_time is not None
    assert any("not valid UTF-8" in r.getMessage() for r in caplog.records)


def test_invalid_utf8_text_in_history_and_heartbeat_rows_costs_only_that_text(
    sqlite_db: Database,
) -> None:
    """SQLite keeps any bytes in a text column; its driver used to fail the whole history (or
    heartbeat) read at the first invalid one, so every later run went unseen. Now the run still
    counts and the bad bytes show as escapes."""
    write_jobs(sqlite_db.url)
    metadata = sa.MetaData()
    history_table(metadata)
    heartbeat_table(metadata)
    engine = sa.create_engine(sqlite_db.url)
    metadata.create_all(engine)
    engine.dispose()
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with sqlite3.connect(sqlite_db.url.removeprefix("sqlite:///")) as conn:
        run = (
            "INSERT INTO job_execution (job_id, job_name, scheduled_run_time, started_at, "
            "finished_at, duration_ms, status, error_message) VALUES (?, {name}, ?, ?, ?, 1000, "
            "?, {error})"
        )
        for minutes, status, error in (
            (-20, "failed", "CAST(X'626164FF' AS TEXT)"),
            (-10, "success", "NULL"),
        ):
            at = str(now + timedelta(minutes=minutes))
            conn.execute(
                run.format(name="CAST(X'6E616D65FF' AS TEXT)", error=error),
                ("database_backup", at, at, at, status),
            )
        conn.execute(
            "INSERT INTO scheduler_heartbeat (scheduler_id, host, pid, state, started_at, "
            "last_seen) VALUES ('s1', CAST(X'686F7374FF' AS TEXT), 1, 'running', ?, ?)",
            (str(now), str(now)),
        )
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0])
    snapshot = poller.poll()
    poller.close()
    assert all(status.ok for status in snapshot.sources.values()), snapshot.sources
    (backup,) = [runs for runs in snapshot.history or () if runs.job_id == "database_backup"]
    assert backup.last_run_success is True
    assert backup.last_error == "bad\\xff"
    assert [(beat.scheduler, beat.host) for beat in snapshot.heartbeats] == [("s1", "host\\xff")]


def test_oversized_rows_are_never_fetched(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows the decoder refuses by size stay in the database: neither fetched at every poll
    nor kept between polls (6 rows of 50 MB held 380 MB)."""
    write_jobs(sqlite_db.url)
    huge = job_state(
        "big", IntervalTrigger(hours=1, timezone=UTC), kwargs={"blob": b"x" * 4_000_000}
    )
    for n in range(4):
        insert_row(sqlite_db, f"big{n}", huge, time.time() + 60)
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0])
    with caplog.at_level(logging.WARNING):
        poller.poll()
        tracemalloc.start()
        try:
            snapshot = poller.poll()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    poller.close()
    assert snapshot.up and snapshot.undecodable == 4 and len(snapshot.jobs) == 7
    assert peak < 2_000_000, f"a poll allocated {peak} bytes for 16 MB of refused rows"
    logged = [r.getMessage() for r in caplog.records if "larger than" in r.getMessage()]
    assert len(logged) == 4  # once per row, not per poll


async def test_name_and_executor_labels_are_capped(sqlite_db: Database) -> None:
    write_jobs(
        sqlite_db.url,
        [
            {
                "func": "sample_jobs:noop",
                "trigger": IntervalTrigger(hours=1),
                "id": f"long{n}",
                "name": "n" * 200_000,
                "executor": "e" * 50_000,
            }
            for n in range(20)
        ],
    )
    async for running in serve(sqlite_db.url):
        await running.poll()
        status, text = await running.get("/metrics")
        assert status == 200 and len(text) < 200_000, len(text)
        samples = await running.samples()
        labels = info(samples, "long3")
        assert labels["name"] == "n" * 157 + "..."
        assert labels["executor"] == "e" * 157 + "..."


def test_impossible_datetimes_never_become_schedules(sqlite_db: Database) -> None:
    moment = datetime(2030, 2, 28, 12, tzinfo=UTC)
    cls, (packed, zone) = moment.__reduce__()
    impossible = bytearray(packed)
    impossible[3] = 31  # 31 February

    class Forged:
        def __reduce__(self) -> Any:
            return (cls, (bytes(impossible), zone))

    write_jobs(sqlite_db.url, [])  # the table, as a scheduler creates it
    trigger = DateTrigger(moment)
    trigger.run_date = Forged()  # type: ignore[assignment]
    insert_row(sqlite_db, "feb31", job_state("feb31", trigger), time.time() + 60)
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0])
    snapshot = poller.poll()
    poller.close()
    (job,) = snapshot.jobs
    assert not job.decoded and snapshot.undecodable == 1
    assert "2030-02-31" not in job.schedule


# --- Fire-time walks that cost too much ---------------------------------------------------------


def never_agree(parts: int, shift: int = 0) -> AndTrigger:
    """Interval triggers that never fire at the same time: an And of them never fires, and
    finding that out costs rounds of every part."""
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=shift)
    return AndTrigger(
        [IntervalTrigger(hours=parts, start_date=start + timedelta(hours=i)) for i in range(parts)]
    )


async def test_a_row_of_20000_shared_and_triggers_does_not_hold_readiness(
    sqlite_db: Database,
) -> None:
    """The 40 KB row that held the first poll, and /readyz, for minutes: an OrTrigger of 20,000
    references to one And of two interval triggers that never coincide."""
    shared = ("apscheduler.triggers.combining:AndTrigger", never_agree(2).__getstate__())
    state = {"version": 1, "jitter": None, "triggers": [shared] * 20_000}
    with mock.patch.object(BaseCombiningTrigger, "__getstate__", lambda self: state):
        row = job_state("wide", OrTrigger([]))
    assert len(row) < 50_000
    write_jobs(sqlite_db.url)
    insert_row(sqlite_db, "wide", row, time.time() + 60)
    async for running in serve(sqlite_db.url):  # polls once at start, as a deployed sidecar
        deadline = time.monotonic() + 30
        while (await running.get("/readyz"))[0] != 200:
            assert time.monotonic() < deadline, "/readyz still 503 after 30 s"
            await asyncio.sleep(0.1)
        samples = await running.samples()
        assert value(samples, "jobstore_exporter_undecodable_jobs", jobstore="default") == 1


def test_a_costly_walk_gives_up_on_its_row_alone(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A row within the decoder's bounds whose fire-time walk takes seconds (9 Ands of 100
    interval triggers that never agree) is given up on by itself; the jobs after it still get
    their expected run times in the same poll, and the log names the job, not the database."""
    write_jobs(sqlite_db.url, [])
    slow = OrTrigger([never_agree(100, shift) for shift in range(9)])
    insert_row(sqlite_db, "slow", job_state("slow", slow), time.time() + 60)  # read first
    write_jobs(sqlite_db.url)
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0])
    with caplog.at_level(logging.WARNING):
        first = poller.poll()
        second = poller.poll()
    poller.close()
    jobs = {job.id: job for job in first.jobs}
    assert first.up and jobs["slow"].decoded and jobs["slow"].trigger == "or"
    assert jobs["slow"].previous_fire_time is None
    for cron in ("database_backup", "report_gen"):  # (the interval job has not fired yet)
        assert jobs[cron].previous_fire_time is not None, cron
    gave_up = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert len(gave_up) == 1, gave_up  # once, not at every poll
    assert "'slow'" in gave_up[0] and "sqlite" not in gave_up[0] and "app.sqlite" not in gave_up[0]
    assert second.up and {job.id for job in second.jobs} == set(jobs)


async def test_a_costly_trigger_never_holds_other_requests_on_its_job_page(
    sqlite_db: Database,
) -> None:
    """The job page walks the trigger for its next fire times: within the walk budget, and
    beside the event loop, so the sidecar keeps answering while it does."""
    write_jobs(sqlite_db.url, [])
    slow = OrTrigger([never_agree(100, shift) for shift in range(9)])
    insert_row(sqlite_db, "slow", job_state("slow", slow), time.time() + 60)
    runs = Runs(sqlite_db.url)  # the history table, as the kit creates it
    runs.add("slow", "success", 3600, 1.0)
    runs.close()
    async for running in serve(sqlite_db.url):
        await running.poll()
        page = asyncio.create_task(running.get("/api/jobs/default/slow"))
        await asyncio.sleep(0.2)  # the page is being worked out
        assert (await running.get("/healthz"))[0] == 200
        assert not page.done(), "/healthz waited for the job page's walk"
        status, text = await page
        assert status == 200 and json.loads(text)["job"]["next_fire_times"] == [], text


def test_a_1kb_row_of_shared_subtrees_is_counted_not_built(sqlite_db: Database) -> None:
    """OrTriggers 8 deep with 10 children each, every child a memo reference to one shared
    subtree: 10^8 triggers in about 1 KB. Read by a real poll in a child process with a memory
    limit (the row once took 1.9 GB and killed the sidecar at every start)."""
    hourly = IntervalTrigger(hours=1, start_date=datetime(2026, 1, 1, tzinfo=UTC))
    child: tuple[str, Any] = (
        "apscheduler.triggers.interval:IntervalTrigger",
        hourly.__getstate__(),
    )
    state: dict[str, Any] = {}
    for _ in range(8):
        state = {"version": 1, "jitter": None, "triggers": [child] * 10}
        child = ("apscheduler.triggers.combining:OrTrigger", state)
    with mock.patch.object(BaseCombiningTrigger, "__getstate__", lambda self: state):
        row = job_state("bomb", OrTrigger([]))
    assert len(row) < 1500
    write_jobs(sqlite_db.url)
    insert_row(sqlite_db, "bomb", row, time.time() + 60)
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from exporter.sidecar.config import load_config
        from exporter.sidecar.poller import StorePoller
        snapshot = StorePoller(load_config(db_url={sqlite_db.url!r}).stores[0]).poll()
        print(snapshot.up, snapshot.undecodable, len(snapshot.jobs))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "1", "4"]
    assert "combines more than 1000 triggers" in out.stderr
