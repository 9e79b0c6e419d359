"""Job store poll cost, in process, against the raw SELECT; and what a body render costs.

For one store (see bench.stores), with the poller `serve` builds (`Sidecar(config).pollers[0]`:
`StorePoller(store)` with the default job selection; it reads the job store, then the history and
heartbeat tables, which in a steady state return nothing new):

- cold: the first poll, which decodes every row;
- steady: polls of an unchanged store (median), interleaved with the floor; also the time the
  job store source alone took (`jobstore_exporter_poll_duration_seconds{source="jobs"}`);
- 1% changed: polls right after `job_state` was rewritten for 1 % of the rows (median);
- floor: the raw SELECT of the same columns, `SELECT id, next_run_time, job_state FROM
  apscheduler_jobs`, run through the driver on a connection of the same read-only engine and
  fetched fully (median), with the cyclic GC paused.

Then the same sidecar's renderers (`Sidecar.bodies`) on the polled snapshot: a render after a
poll (everything), a render of the clock part alone (what changes every second), a scrape
served from cache, and a render after a poll in which 1% of the jobs changed (the median of
five such polls, each changing other rows, with the fastest and slowest beside it).

    python -m bench.poll URL [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from typing import Any

import sqlalchemy as sa

from bench.scrape import ACCEPT
from bench.stores import change_states
from exporter.sidecar import memory
from exporter.sidecar.config import load_config
from exporter.sidecar.serving.server import Sidecar

FLOOR_SQL = "SELECT id, next_run_time, job_state FROM apscheduler_jobs"


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def raw_select(engine: sa.Engine) -> int:
    """The floor. The cyclic GC is paused while it runs: the rows are tuples of plain values
    (no cycles to find), and a full collection of the poller's heap, which their allocation may
    trigger, is the exporter's cost, not the SELECT's."""
    gc.disable()
    try:
        with engine.connect() as conn:
            return len(conn.exec_driver_sql(FLOOR_SQL).fetchall())
    finally:
        gc.enable()


def measure(url: str, rounds: int = 7, changed_rounds: int = 3) -> dict[str, Any]:
    sidecar = Sidecar(load_config(db_url=url))  # pollers and renderers as `serve` builds them
    # As in `serve`: what each poll leaves behind is frozen out of the cyclic GC's walks, so a
    # full collection of the whole heap does not land, at random, inside a timed poll or render.
    sidecar.heap = memory.HeapFreezer()
    poller = sidecar.pollers[0]
    try:
        cold = _timed(poller.poll)
        _freeze(sidecar)
        if not poller.snapshot.up:
            raise RuntimeError(f"poll failed: {poller.snapshot.sources['jobs'].error}")
        raw_select(poller.engine)  # both start from warm caches
        steady, floor, source = [], [], []
        for _ in range(rounds):
            floor.append(_timed(lambda: raw_select(poller.engine)))
            steady.append(_timed(poller.poll))
            _freeze(sidecar)
            source.append(poller.snapshot.sources["jobs"].duration)
        changed, changed_rows = [], 0
        for round_ in range(1, changed_rounds + 1):
            changed_rows = change_states(url, 0.01, round_=round_)
            changed.append(_timed(poller.poll))
            _freeze(sidecar)
        result: dict[str, Any] = {
            "jobs": len(poller.snapshot.jobs),
            "undecodable": poller.snapshot.undecodable,
            "cold_s": round(cold, 3),
            "steady_ms": round(statistics.median(steady) * 1000, 2),
            "jobs_source_ms": round(statistics.median(source) * 1000, 2),
            "floor_ms": round(statistics.median(floor) * 1000, 2),
            "changed_ms": round(statistics.median(changed) * 1000, 2),
            "changed_rows": changed_rows,
            "rounds": rounds,
        }
        result["ratio_steady"] = round(result["steady_ms"] / result["floor_ms"], 2)
        result["ratio_changed"] = round(result["changed_ms"] / result["floor_ms"], 2)
        try:
            change = lambda n: change_states(url, 0.01, round_=changed_rounds + 1 + n)  # noqa: E731
            result["render"] = asyncio.run(render_costs(sidecar, change))
        except Exception as exc:  # noqa: BLE001 - internal API; report rather than fail the suite
            result["render"] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        for each in sidecar.pollers:
            each.close()
    return result


async def render_costs(
    sidecar: Sidecar, change: Any = None, change_rounds: int = 5
) -> dict[str, Any]:
    """What `serve` spends on bodies: after a poll, after a poll in which 1% of the jobs
    changed (``change(n)`` rewrites them, other rows each round; the median of
    ``change_rounds``, a single render being at the mercy of whatever else the machine does),
    each second, and per cached scrape."""
    fake_clock = [0.0]
    sidecar.bodies.clock = lambda: fake_clock[0]
    await sidecar.bodies.get(ACCEPT)  # warm
    sidecar.pollers[0].poll()
    _freeze(sidecar)
    # Scrapes are served the last complete body while a newer one renders, so time the render
    # itself (what every poll, and every second, costs the process).
    after_poll = await _atimed(sidecar.bodies.refresh())
    clock_renders = []
    for _ in range(3):
        fake_clock[0] += 10.0
        clock_renders.append(await _atimed(sidecar.bodies.refresh()))
    cached = [await _atimed(sidecar.bodies.get(ACCEPT)) for _ in range(50)]
    after_change = []
    for n in range(change_rounds if change is not None else 0):
        change(n)
        sidecar.pollers[0].poll()
        _freeze(sidecar)
        after_change.append(await _atimed(sidecar.bodies.refresh()))
    return {
        "after_poll_ms": round(after_poll * 1000, 1),
        "after_change_ms": round(statistics.median(after_change) * 1000, 1)
        if after_change
        else None,
        "after_change_range_ms": [
            round(min(after_change) * 1000, 1),
            round(max(after_change) * 1000, 1),
        ]
        if after_change
        else None,
        "clock_part_ms": round(statistics.median(clock_renders) * 1000, 1),
        "cached_scrape_ms": round(statistics.median(cached) * 1000, 3),
    }


def _freeze(sidecar: Sidecar) -> None:
    if sidecar.heap is not None:
        sidecar.heap.after_poll()


async def _atimed(awaitable: Any) -> float:
    started = time.perf_counter()
    await awaitable
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.url, args.rounds), indent=2))


if __name__ == "__main__":
    main()
