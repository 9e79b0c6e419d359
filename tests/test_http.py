"""The HTTP endpoints, served by the real aiohttp app over a real socket."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from apscheduler.triggers.cron import CronTrigger
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families
from stores import write_jobs
from support import Database

from exporter.sidecar.config import Config, load_config
from exporter.sidecar.poller import StorePoller
from exporter.sidecar.serving import server
from exporter.sidecar.serving.server import SIDECAR, create_app

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


class Exporter:
    def __init__(self, config: Config, server: TestServer, pollers: list[StorePoller]) -> None:
        self.config = config
        self.server = server
        self.pollers = pollers

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def poll(self) -> None:
        for poller in self.pollers:
            poller.poll()

    async def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        # Scrapes are served the last complete body while a newer one renders; a test that
        # has just polled waits for that render instead.
        await self.server.app[SIDECAR].bodies.refresh()
        async with ClientSession() as session, session.get(self.url("/metrics")) as resp:
            assert resp.status == 200
            text = await resp.text()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


async def start_exporter(url: str) -> AsyncIterator[Exporter]:
    # A long interval: the tests decide when polls happen (the app polls once at start).
    config = load_config(db_url=url, poll_interval=3600)
    pollers = [StorePoller(store) for store in config.stores]
    server = TestServer(create_app(config, pollers))
    await server.start_server()
    try:
        yield Exporter(config, server, pollers)
    finally:
        await server.close()


@pytest.fixture
async def exporter(sqlite_db: Database) -> AsyncIterator[Exporter]:
    write_jobs(sqlite_db.url)
    async for running in start_exporter(sqlite_db.url):
        running.poll()
        yield running


def value(samples: dict, metric: str, /, **labels: str) -> float | None:  # type: ignore[type-arg]
    return samples.get((metric, frozenset(labels.items())))


async def test_metrics_describe_the_store(exporter: Exporter, sqlite_db: Database) -> None:
    expected = write_jobs(sqlite_db.url, jobs=[])  # the same jobs, as APScheduler sees them
    samples = await exporter.samples()
    store = {"jobstore": "default"}
    assert value(samples, "apscheduler_up", **store) == 1
    assert value(samples, "apscheduler_jobs", state="active", **store) == 3
    assert value(samples, "apscheduler_jobs", state="paused", **store) == 0
    assert value(samples, "apscheduler_jobs_overdue", **store) == 0
    info = {
        "jobstore": "default",
        "job_id": "database_backup",
        "name": "Daily Database Backup",
        "trigger": "cron",
        "schedule": "Daily at 02:00 UTC",
        "executor": "default",
    }
    assert value(samples, "apscheduler_job_info", **info) == 1
    now = time.time()
    for job_id, next_run in expected.items():
        labels = {"jobstore": "default", "job_id": job_id}
        assert value(samples, "apscheduler_job_next_run_timestamp_seconds", **labels) == (
            pytest.approx(next_run, abs=1e-3)
        )
        delta = value(samples, "apscheduler_job_next_run_delta_seconds", **labels)
        assert delta == pytest.approx(next_run - now, abs=5)  # type: ignore[operator]
        assert value(samples, "apscheduler_job_paused", **labels) == 0
        assert value(samples, "apscheduler_job_misfire_grace_seconds", **labels) == 1
    assert value(samples, "jobstore_exporter_undecodable_jobs", **store) == 0
    assert value(samples, "jobstore_exporter_poll_errors_total", source="jobs", **store) == 0
    last = value(
        samples, "jobstore_exporter_last_poll_success_timestamp_seconds", source="jobs", **store
    )
    assert last == pytest.approx(now, abs=30)
    build = [k for k in samples if k[0] == "jobstore_exporter_build_info"]
    assert len(build) == 1 and dict(build[0][1])["version"]


async def test_the_delta_is_computed_at_scrape_time(exporter: Exporter) -> None:
    labels = {"jobstore": "default", "job_id": "cleanup_temp"}
    first = value(await exporter.samples(), "apscheduler_job_next_run_delta_seconds", **labels)
    time.sleep(1.1)
    second = value(await exporter.samples(), "apscheduler_job_next_run_delta_seconds", **labels)
    assert first is not None and second is not None
    assert first - second == pytest.approx(1.1, abs=0.5)


async def test_job_removed_from_store_disappears_from_every_series(
    exporter: Exporter, sqlite_db: Database
) -> None:
    before = await exporter.samples()
    assert any(dict(k[1]).get("job_id") == "report_gen" for k in before)
    write_jobs(sqlite_db.url, jobs=[], remove=("report_gen",))
    exporter.poll()
    after = await exporter.samples()
    assert not any(dict(k[1]).get("job_id") == "report_gen" for k in after)
    assert value(after, "apscheduler_jobs", jobstore="default", state="active") == 2


async def test_paused_job_has_no_next_run(exporter: Exporter, sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url, jobs=[], pause=("cleanup_temp",))
    exporter.poll()
    samples = await exporter.samples()
    labels = {"jobstore": "default", "job_id": "cleanup_temp"}
    assert value(samples, "apscheduler_job_paused", **labels) == 1
    assert value(samples, "apscheduler_job_next_run_timestamp_seconds", **labels) is None
    assert value(samples, "apscheduler_job_next_run_delta_seconds", **labels) is None
    assert value(samples, "apscheduler_jobs", jobstore="default", state="paused") == 1


async def test_a_stalled_scheduler_shows_overdue_jobs(
    exporter: Exporter, sqlite_db: Database
) -> None:
    # What a dead scheduler leaves behind: next_run_time stuck in the past.
    engine = sqlite_db.engine()
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE apscheduler_jobs SET next_run_time = :t WHERE id = 'cleanup_temp'"),
            {"t": time.time() - 3600},
        )
    engine.dispose()
    exporter.poll()
    samples = await exporter.samples()
    assert value(samples, "apscheduler_jobs_overdue", jobstore="default") == 1
    delta = value(
        samples, "apscheduler_job_next_run_delta_seconds", jobstore="default", job_id="cleanup_temp"
    )
    assert delta is not None and delta < -3500


async def test_openmetrics_when_prometheus_asks(exporter: Exporter) -> None:
    async with ClientSession() as session:
        headers = {"Accept": PROMETHEUS_ACCEPT}
        async with session.get(exporter.url("/metrics"), headers=headers) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            text = await resp.text()
        async with session.get(exporter.url("/metrics")) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
    assert text.endswith("# EOF\n")
    families = {family.name: family for family in parse_om(text)}
    assert families["jobstore_exporter_poll_errors"].type == "counter"
    assert families["apscheduler_job_info"].type in {"gauge", "info"}


async def test_gzip_when_accepted(exporter: Exporter) -> None:
    async with ClientSession(auto_decompress=False) as session:
        headers = {"Accept-Encoding": "gzip"}
        async with session.get(exporter.url("/metrics"), headers=headers) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            raw = await resp.read()
        identity = {"Accept-Encoding": "identity"}
        async with session.get(exporter.url("/metrics"), headers=identity) as resp:
            assert "Content-Encoding" not in resp.headers
    assert b"apscheduler_up" in gzip.decompress(raw)


async def test_probes(tmp_path: Path, sqlite_db: Database) -> None:
    # A store that does not exist yet: alive, but not ready, and says why.
    missing = f"sqlite:///{tmp_path / 'later.sqlite'}"
    async for running in start_exporter(missing):
        async with ClientSession() as session:
            async with session.get(running.url("/healthz")) as resp:
                assert resp.status == 200
            running.poll()
            async with session.get(running.url("/readyz")) as resp:
                assert resp.status == 503
                assert "default" in await resp.text()
            samples = await running.samples()
            assert value(samples, "apscheduler_up", jobstore="default") == 0
            assert not [k for k in samples if k[0] == "apscheduler_jobs"]
            write_jobs(missing)
            running.poll()
            async with session.get(running.url("/readyz")) as resp:
                assert resp.status == 200


async def test_deltas_escape_awkward_job_ids(sqlite_db: Database) -> None:
    from apscheduler.triggers.interval import IntervalTrigger

    ids = ['quote"id', "back\\slash", "new\nline"]
    write_jobs(
        sqlite_db.url,
        [{"func": "sample_jobs:noop", "trigger": IntervalTrigger(hours=1), "id": i} for i in ids],
    )
    async for running in start_exporter(sqlite_db.url):
        running.poll()
        await running.server.app[SIDECAR].bodies.refresh()
        async with ClientSession() as session:
            for accept in (PROMETHEUS_ACCEPT, "text/plain"):
                async with session.get(running.url("/metrics"), headers={"Accept": accept}) as r:
                    text = await r.text()
                parse = parse_om if accept == PROMETHEUS_ACCEPT else text_string_to_metric_families
                deltas = {
                    s.labels["job_id"]
                    for family in parse(text)
                    for s in family.samples
                    if s.name == "apscheduler_job_next_run_delta_seconds"
                }
                assert deltas == set(ids), accept


async def test_a_large_body_arrives_whole_with_and_without_gzip(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The plain body far larger than one write slice (server.WRITE_CHUNK, made smaller here so
    # that 600 jobs are enough): it leaves in slices, and must arrive complete and the same as
    # the gzipped one.
    chunk = 128 * 1024
    monkeypatch.setattr(server, "WRITE_CHUNK", chunk)
    jobs = [
        {
            "func": "sample_jobs:noop",
            "trigger": CronTrigger(hour=i % 24, minute=i % 60, timezone="UTC"),
            "id": f"tenant-{i:04d}-nightly-export-of-everything",
            "name": f"Nightly export of everything for tenant {i}",
        }
        for i in range(600)
    ]
    write_jobs(sqlite_db.url, jobs)
    async for running in start_exporter(sqlite_db.url):
        running.poll()
        await running.server.app[SIDECAR].bodies.refresh()
        async with ClientSession(auto_decompress=False) as session:
            identity = {"Accept-Encoding": "identity"}
            async with session.get(running.url("/metrics"), headers=identity) as resp:
                plain = await resp.read()
                assert int(resp.headers["Content-Length"]) == len(plain)
            gzipped = {"Accept-Encoding": "gzip"}
            async with session.get(running.url("/metrics"), headers=gzipped) as resp:
                packed = await resp.read()
    assert len(plain) > 2 * chunk
    assert plain == gzip.decompress(packed)
    assert plain.count(b"\napscheduler_job_info{") == 600
