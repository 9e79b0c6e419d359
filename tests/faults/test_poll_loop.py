"""The poll loop through outages: recovery within one poll, a black hole reported down within
one poll interval plus one statement timeout, and a loop that never dies.

The outage tests run the real `jobstore-exporter serve` process against a private PostgreSQL
cluster the test stops (or black-holes through a loopback proxy) and read /metrics as
Prometheus would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from proxy import PartitionableProxy
from stores import write_jobs
from support import PrivatePostgres, free_port, stop, wait_for

from exporter.sidecar.config import load_config
from exporter.sidecar.metrics.collector import SnapshotCollector
from exporter.sidecar.poller import StorePoller


@contextmanager
def serving(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`jobstore-exporter serve ARGS` on a free loopback port; yields (base URL, process)."""
    port = free_port()
    command = [
        sys.executable, "-m", "exporter", "serve", "--listen-address", f"127.0.0.1:{port}", *args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base) or proc.poll() is not None, 30, "the exporter to listen")
        assert proc.poll() is None, proc.communicate()[0]
        yield base, proc
    finally:
        stop(proc)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def metrics(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def up(base: str) -> float | None:
    return metrics(base).get(("apscheduler_up", frozenset({("jobstore", "default")})))


def job_series(data: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> set[str]:
    return {dict(labels)["job_id"] for name, labels in data if name == "apscheduler_job_info"}


def test_up_again_within_one_poll_after_the_database_returns(
    private_pg: PrivatePostgres,
) -> None:
    """A 10 s outage: before, the doubling wait (1, 2, 4, 8 s...) left `apscheduler_up 0` for
    up to several seconds after the database was back; now a cheap check every poll interval
    brings it back within one interval (plus the poll itself)."""
    write_jobs(private_pg.url)
    args = ("--db-url", private_pg.url, "--poll-interval", "1", "--statement-timeout", "2")
    with serving(*args) as (base, proc):
        wait_for(lambda: up(base) == 1, 30, "the first successful poll")
        private_pg.stop()
        wait_for(lambda: up(base) == 0, 15, "the outage to show")
        time.sleep(10)
        private_pg.start()
        back = time.monotonic()
        wait_for(lambda: up(base) == 1, 30, "recovery", interval=0.1)
        took = time.monotonic() - back
        assert took < 3.0, f"apscheduler_up came back {took:.1f} s after the database"
    output = proc.communicate()[0]
    # Log lines stay rate-limited: a full poll (and a line) only on the backoff schedule,
    # 1, 2, 4, 8 s apart, not one per second of the outage.
    failures = [line for line in output.splitlines() if "job store poll failed" in line]
    assert 1 <= len(failures) <= 6, failures


def test_black_hole_reported_down_within_interval_plus_statement_timeout(
    private_pg: PrivatePostgres,
) -> None:
    """Black-holed: no error ever comes back. Before, `apscheduler_up 1` stayed for the whole
    4 x statement timeout + 5 s; now down once the poll is overdue by one interval plus one
    statement timeout, with the last known job series still served."""
    write_jobs(private_pg.url)
    proxy = PartitionableProxy(private_pg.port)
    url = sa.make_url(private_pg.url).set(port=proxy.port).render_as_string(False)
    args = ("--db-url", url, "--poll-interval", "1", "--statement-timeout", "3")
    try:
        with serving(*args) as (base, _proc):
            wait_for(lambda: up(base) == 1, 30, "the first successful poll")
            before = job_series(metrics(base))
            assert before == {"database_backup", "cleanup_temp", "report_gen"}
            proxy.partition()
            cut = time.monotonic()
            wait_for(lambda: up(base) == 0, 30, "the black hole to show", interval=0.1)
            took = time.monotonic() - cut
            # Overdue after interval + timeout = 4 s, counted from the start of the poll that
            # hangs, which began at most one interval after the cut.
            assert took < 4.0 + 1.0 + 1.5, f"reported down only after {took:.1f} s"
            assert job_series(metrics(base)) == before  # the old series stay
            proxy.heal()
            wait_for(lambda: up(base) == 1, 40, "recovery after the black hole", interval=0.1)
    finally:
        proxy.close()


async def test_loop_survives_more_than_1024_failures_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After 1,025 failed polls the doubling wait overflowed a float and the loop died for good;
    now the store is still polled and comes back when the database does."""
    path = tmp_path / "app.sqlite"
    poller = StorePoller(load_config(db_url=f"sqlite:///{path}").stores[0])
    task = asyncio.create_task(poller.run(interval=0.0005, max_backoff=0.0005))
    try:
        started = time.monotonic()
        while poller.failures_in_row <= 1100:
            assert not task.done(), task.exception()
            assert time.monotonic() - started < 60, "too slow to fail 1,100 times"
            await asyncio.sleep(0.05)
        write_jobs(f"sqlite:///{path}")
        started = time.monotonic()
        while not poller.snapshot.up:
            assert not task.done(), task.exception()
            assert time.monotonic() - started < 20, "never polled again"
            await asyncio.sleep(0.05)
        assert poller.snapshot.sources["jobs"].errors_total > 1100
    finally:
        task.cancel()
        poller.close()


async def test_a_failed_round_is_logged_counted_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error in the loop (here: the render callback after a poll) used to end the
    task silently; now it is logged with its traceback, counted, and polling continues."""
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    write_jobs(url)
    poller = StorePoller(load_config(db_url=url).stores[0])
    rounds = []

    def render_once_broken() -> None:
        rounds.append(time.monotonic())
        if len(rounds) == 1:
            raise RuntimeError("render blew up")

    caplog.set_level(logging.ERROR, logger="exporter")
    task = asyncio.create_task(poller.run(0.05, 1.0, after_poll=render_once_broken))
    try:
        started = time.monotonic()
        while len(rounds) < 3:
            assert not task.done(), task.exception()
            assert time.monotonic() - started < 20
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        poller.close()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in SnapshotCollector(lambda: [poller.snapshot]).collect()
        for s in family.samples
    }
    key = ("jobstore_exporter_poll_loop_restarts_total", frozenset({("jobstore", "default")}))
    assert samples[key] == 1
    crashed = [r for r in caplog.records if "poll loop failed" in r.getMessage()]
    assert len(crashed) == 1 and crashed[0].exc_info is not None


async def test_a_table_created_during_the_backoff_shows_within_one_interval(
    tmp_path: Path,
) -> None:
    """The exporter started before the app: the database is there, the job table is not. The
    wait between full polls has grown (0.2 s doubled to several seconds); the table appears:
    the check every interval sees it, and the next full poll comes at once."""
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    sa.create_engine(url).connect().close()  # an empty database file
    poller = StorePoller(load_config(db_url=url).stores[0])
    task = asyncio.create_task(poller.run(interval=0.2, max_backoff=30.0))
    try:
        started = time.monotonic()
        while poller.failures_in_row < 6:  # the wait is 0.2 x 2^5 = 6.4 s by now
            assert not task.done(), task.exception()
            assert time.monotonic() - started < 30
            await asyncio.sleep(0.05)
        write_jobs(url)
        created = time.monotonic()
        while not poller.snapshot.up:
            assert not task.done(), task.exception()
            assert time.monotonic() - created < 20
            await asyncio.sleep(0.05)
        took = time.monotonic() - created
        assert took < 1.5, f"up {took:.1f} s after the table was created"
    finally:
        task.cancel()
        poller.close()
