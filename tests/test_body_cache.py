"""Scrapes are not held behind the per-second clock part's render while scrapes keep coming.

The clock part (next-run deltas, heartbeat freshness, process metrics) is rendered again once it
is older than ``max_age``. A scrape that finds it older gets the body of a moment ago while the
new one renders; only after a quiet spell (older than twice ``max_age``) does a scrape wait.
The render is made slow here by its deltas, which wait for the test to let them go.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from dataclasses import replace

from prometheus_client.registry import CollectorRegistry

from exporter.sidecar.metrics.deltas import DeltaLines
from exporter.sidecar.metrics.render import BodyCache
from exporter.sidecar.snapshot import JobView, StoreSnapshot

TEXT = "text/plain"


async def test_a_scrape_gets_the_last_body_while_the_clock_part_renders() -> None:
    now = [0.0]
    gate = threading.Event()
    gate.set()
    renders = [0]

    def deltas(again: bool) -> bytes:
        gate.wait(10)  # bounded: a test that fails never hangs
        renders[0] += 1
        return gzip.compress(f"# HELP d d\n# TYPE d gauge\nd {renders[0]}.0\n".encode())

    cache = BodyCache(
        lambda openmetrics: gzip.compress(b"# HELP s s\n# TYPE s gauge\ns 1.0\n"),
        CollectorRegistry(auto_describe=False),
        lambda: 1,
        deltas=deltas,
        clock=lambda: now[0],
    )
    first = await cache.get(TEXT)
    assert b"d 1.0" in first.plain

    gate.clear()  # the next clock render hangs until let go
    now[0] = 1.5  # older than max_age, within twice max_age: scrapes keep coming
    served = await asyncio.wait_for(cache.get(TEXT), 5)
    assert served is first  # not held behind the render under way
    gate.set()
    await cache.refresh()
    fresh = await cache.get(TEXT)
    assert b"d 2.0" in fresh.plain and fresh.made == 1.5

    now[0] = 10.0  # after a quiet spell the deltas would be stale: the scrape waits for them
    later = await asyncio.wait_for(cache.get(TEXT), 5)
    assert b"d 3.0" in later.plain and later.made == 10.0


def test_a_body_right_after_a_poll_keeps_the_time_of_recent_deltas() -> None:
    """Right after a poll, a clock part younger than max_age keeps its time: the deltas of jobs
    whose next run did not move are the same bytes, those of a job that moved are its new next
    run against that same time; past max_age, the deltas are worked out at the clock's time."""
    wall = [1000.0]
    job = JobView(id="a", next_run_time=1010.0, decoded=True)
    other = JobView(id="b", next_run_time=1100.0, decoded=True)
    snaps = [StoreSnapshot("default", 0.0, jobs=(job, other), ever_succeeded=True)]
    deltas = DeltaLines(lambda: snaps, clock=lambda: wall[0])

    def lines(gzipped: bytes) -> list[str]:
        return [line for line in gzip.decompress(gzipped).decode().splitlines() if "{" in line]

    first = deltas(False)
    assert lines(first) == [
        'apscheduler_job_next_run_delta_seconds{jobstore="default",job_id="a"} 10.0',
        'apscheduler_job_next_run_delta_seconds{jobstore="default",job_id="b"} 100.0',
    ]
    wall[0] = 1000.5
    renamed = replace(job, name="renamed")  # a poll that modified a job, none ran
    snaps = [StoreSnapshot("default", 1.0, jobs=(renamed, other), ever_succeeded=True)]
    assert deltas(True) == first

    ran = replace(job, next_run_time=1020.0)  # a poll in which a job ran
    snaps = [StoreSnapshot("default", 2.0, jobs=(ran, other), ever_succeeded=True)]
    assert lines(deltas(True))[0].endswith(" 20.0")  # against the time of the last render

    assert lines(deltas(False))[0].endswith(" 19.5")  # a clock render: the clock's time
