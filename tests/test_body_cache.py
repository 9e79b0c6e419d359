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

from prometheus_client.registry import CollectorRegistry

from exporter.sidecar.metrics.render import BodyCache

TEXT = "text/plain"


async def test_a_scrape_gets_the_last_body_while_the_clock_part_renders() -> None:
    now = [0.0]
    gate = threading.Event()
    gate.set()
    renders = [0]

    def deltas() -> bytes:
        gate.wait(10)  # bounded: a test that fails never hangs
        renders[0] += 1
        return f"# HELP d d\n# TYPE d gauge\nd {renders[0]}.0\n".encode()

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
