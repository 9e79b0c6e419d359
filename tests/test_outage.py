"""A database that goes away and comes back, on a private PostgreSQL cluster the test owns."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa
from stores import write_jobs
from support import PrivatePostgres

from exporter.sidecar.config import load_config
from exporter.sidecar.metrics.collector import SnapshotCollector
from exporter.sidecar.poller import StorePoller

PASSWORD = "s3cret-Pa55word"


def collect(poller: StorePoller) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    collector = SnapshotCollector(lambda: [poller.snapshot])
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in collector.collect()
        for s in family.samples
    }


def test_outage_keeps_last_jobs_marks_down_and_recovers(
    private_pg: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    admin = sa.create_engine(private_pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"ALTER USER postgres PASSWORD '{PASSWORD}'"))
    admin.dispose()
    write_jobs(private_pg.url)
    url = sa.make_url(private_pg.url).set(password=PASSWORD).render_as_string(False)
    store = load_config(db_url=url, statement_timeout=2).stores[0]
    poller = StorePoller(store)
    assert poller.poll().up
    healthy = collect(poller)

    caplog.set_level(logging.INFO, logger="exporter")
    private_pg.stop()
    for _ in range(3):
        down = poller.poll()
    samples = collect(poller)
    assert samples[("apscheduler_up", frozenset({("jobstore", "default")}))] == 0
    errors = (
        "jobstore_exporter_poll_errors_total",
        frozenset({("jobstore", "default"), ("source", "jobs")}),
    )
    assert samples[errors] == 3
    # The last known jobs are still served, unchanged.
    job_series = {k: v for k, v in healthy.items() if k[0].startswith("apscheduler_job_")}
    job_series = {k: v for k, v in job_series.items() if "delta" not in k[0]}
    assert job_series and all(samples[k] == v for k, v in job_series.items())
    # One line per failed poll, no traceback, no password anywhere.
    failures = [r for r in caplog.records if "job store poll failed" in r.getMessage()]
    assert len(failures) == 3
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in failures)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    assert PASSWORD not in (down.sources["jobs"].error or "")
    assert "***" in (down.sources["jobs"].error or "")
    # Backoff: doubled per consecutive failure, capped.
    assert poller.next_delay(15, 120) == 60
    assert poller.next_delay(100, 120) == 120

    private_pg.start()
    deadline = time.monotonic() + 30
    while not poller.poll().up and time.monotonic() < deadline:
        time.sleep(0.2)
    recovered = collect(poller)
    assert recovered[("apscheduler_up", frozenset({("jobstore", "default")}))] == 1
    assert recovered[errors] >= 3  # a counter never goes back
    assert poller.next_delay(15, 120) == 15
    assert any("readable again" in r.getMessage() for r in caplog.records)
    poller.close()


def test_table_missing_then_created(private_pg: PrivatePostgres) -> None:
    store = load_config(db_url=private_pg.url).stores[0]
    poller = StorePoller(store)
    snapshot = poller.poll()
    assert not snapshot.up and not snapshot.ever_succeeded
    assert "apscheduler_jobs" in (snapshot.sources["jobs"].error or "")
    write_jobs(private_pg.url)
    assert poller.poll().up
    poller.close()
