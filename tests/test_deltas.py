"""The next-run deltas of the clock part (exporter/sidecar/metrics/deltas.py) against
prometheus_client, over sequences of polls in which jobs stay, change, leave and come back.

Each job's text before its number is kept between renders; these properties hold the kept text
to what prometheus_client writes for the same snapshots at the same time: the same series in
the same order with the same values, in both formats, and never a line of a job that left.
"""

from __future__ import annotations

import gzip
import math
import re
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import CollectorRegistry
from test_metric_store import GRACE, STORE_NAMES, pools, samples, snapshots

from exporter.sidecar.metrics.collector import SnapshotCollector
from exporter.sidecar.metrics.deltas import DELTA, SLICE, DeltaLines
from exporter.sidecar.snapshot import JobView, StoreSnapshot

NOW = st.floats(0, 4e9)
MOSTLY = st.sampled_from([True, True, True, False])


def reference(snaps: list[StoreSnapshot], now: float) -> list[tuple[str, tuple, str]]:  # type: ignore[type-arg]
    """The delta samples prometheus_client writes for ``snaps`` at ``now``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snaps, default_grace=GRACE, clock=lambda: now))
    body = generate_openmetrics(registry).decode()
    return [s for s in samples(parse_om(body)) if s[0] == DELTA.name]


def mine(gzipped: bytes) -> tuple[list[tuple[str, tuple, str]], list[tuple[str, tuple, str]]]:  # type: ignore[type-arg]
    """The samples of a rendered delta family, read as text and as OpenMetrics."""
    text = gzip.decompress(gzipped).decode()
    return samples(parse_text(text)), samples(parse_om(text + "# EOF\n"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), STORE_NAMES, st.integers(1, 6))
def test_kept_delta_lines_follow_every_poll(
    data: st.DataObject, names: list[str], polls: int
) -> None:
    pool = {name: data.draw(pools()) for name in names}
    current: list[StoreSnapshot] = []
    now = [0.0]
    deltas = DeltaLines(lambda: current, clock=lambda: now[0])
    for _ in range(polls):
        present = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        # Mostly stores that read their jobs: those are the ones with deltas to keep.
        current[:] = [
            replace(data.draw(snapshots(name, pool[name])), ever_succeeded=data.draw(MOSTLY))
            for name in present
        ]
        now[0] = data.draw(NOW)
        as_text, as_openmetrics = mine(deltas())
        expected = reference(current, now[0])
        assert as_text == expected
        assert as_openmetrics == expected


def test_a_job_that_leaves_takes_its_line_and_one_that_comes_gets_one() -> None:
    """The kept text is per job id: a new job's label text is made for it (escaped), a job
    that left is gone at the next render, and the numbers follow the clock."""
    now = [1000.0]
    a = JobView(id="a", next_run_time=1010.0, decoded=True)
    odd = JobView(id='we"ird\\\nid', next_run_time=1500.25, decoded=True)
    snaps = [StoreSnapshot("default", 0.0, jobs=(a,), ever_succeeded=True)]
    deltas = DeltaLines(lambda: snaps, clock=lambda: now[0])

    def lines() -> list[str]:
        text = gzip.decompress(deltas()).decode()
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert lines() == ['apscheduler_job_next_run_delta_seconds{jobstore="default",job_id="a"} 10.0']
    snaps = [StoreSnapshot("default", 1.0, jobs=(odd,), ever_succeeded=True)]
    now[0] = 1001.0
    assert lines() == [
        'apscheduler_job_next_run_delta_seconds{jobstore="default",'
        'job_id="we\\"ird\\\\\\nid"} 499.25'
    ]
    snaps = [StoreSnapshot("default", 2.0, jobs=(a, odd), ever_succeeded=False)]
    assert lines() == []  # a store that never read its jobs has no deltas


def test_a_store_larger_than_a_slice_gets_every_line_once() -> None:
    """Lines are formatted a slice of jobs at a time, with a pause between slices: a store of
    several slices still gets one line per job, in order, each with its own value."""
    count = 3 * SLICE + 7
    jobs = tuple(
        JobView(id=f"job-{i:05d}", next_run_time=2000.0 + i * 0.1, decoded=True)
        for i in range(count)
    )
    snaps = [StoreSnapshot("default", 0.0, jobs=jobs, ever_succeeded=True)]
    as_text, as_openmetrics = mine(DeltaLines(lambda: snaps, clock=lambda: 1000.0)())
    expected = reference(snaps, 1000.0)
    assert len(expected) == count
    assert as_text == expected
    assert as_openmetrics == expected


def test_a_poll_that_moves_some_next_run_times_moves_those_lines() -> None:
    """The usual poll: the same jobs in the same order, some of them ran (a new next run time),
    were renamed (a new view, the same line) or were paused and resumed. Each render has every
    job's line with the value of its latest next run time, as prometheus_client writes it."""
    jobs = [
        JobView(id=job_id, next_run_time=2000.0 + i, decoded=True, name=f"n{i}")
        for i, job_id in enumerate(["a", 'we"ird', "c", "d", "e"])
    ]
    snaps: list[StoreSnapshot] = []
    deltas = DeltaLines(lambda: snaps, clock=lambda: 1000.0)
    polls: list[dict[int, float | None | str]] = [
        {},
        {0: 3000.5, 3: 2500.25},  # two ran
        {1: 4000.0, 2: "renamed"},  # the one whose id needs escaping ran; one renamed
        {4: None},  # paused: its line goes
        {4: 2600.0, 0: 3100.0},  # resumed, and another ran
        {2: None, 3: 2700.0},
    ]
    for step, moves in enumerate(polls):
        for i, move in moves.items():
            if move == "renamed":
                jobs[i] = replace(jobs[i], name=f"{jobs[i].name} (renamed)")
            else:
                jobs[i] = replace(jobs[i], next_run_time=move)  # type: ignore[arg-type]
        snaps[:] = [StoreSnapshot("default", float(step), jobs=tuple(jobs), ever_succeeded=True)]
        as_text, as_openmetrics = mine(deltas())
        expected = reference(snaps, 1000.0)
        assert len(expected) == sum(job.next_run_time is not None for job in jobs)
        assert as_text == expected
        assert as_openmetrics == expected


def spelled(text: str, name: str) -> dict[str, str]:
    """Each job's value in the family ``name`` of ``text``, as written."""
    found = re.findall(rf'^{name}{{[^\n]*job_id="([^"]*)"[^\n]*}} (\S+)$', text, re.M)
    return dict(found)


def test_a_next_run_time_that_is_not_a_number_is_spelled_as_the_static_part_spells_it() -> None:
    """A next run time column can hold infinity or NaN (a PostgreSQL double, an SQLite real).
    Its delta line then reads ``+Inf``, ``-Inf`` or ``NaN``, as prometheus_client writes them
    and as the same job's ``apscheduler_job_next_run_timestamp_seconds`` reads in the static
    part, not Python's ``inf``/``nan``; on a full render and after a poll that moved one job."""
    jobs = [JobView(id=i, next_run_time=1010.5, decoded=True) for i in ("fin", "up", "down", "nan")]
    snaps: list[StoreSnapshot] = []
    deltas = DeltaLines(lambda: snaps, clock=lambda: 1000.0)

    def poll(step: int, **moves: float) -> dict[str, str]:
        for i, job in enumerate(jobs):
            if job.id in moves:
                jobs[i] = replace(job, next_run_time=moves[job.id])
        snaps[:] = [StoreSnapshot("default", float(step), jobs=tuple(jobs), ever_succeeded=True)]
        return spelled(gzip.decompress(deltas()).decode(), DELTA.name)

    assert poll(0) == {"fin": "10.5", "up": "10.5", "down": "10.5", "nan": "10.5"}
    # The same jobs, three moved: the poll that updates their lines in place.
    assert poll(1, up=math.inf, down=-math.inf, nan=math.nan) == {
        "fin": "10.5", "up": "+Inf", "down": "-Inf", "nan": "NaN"
    }  # fmt: skip
    # A job gone: every line made again.
    del jobs[0]
    assert poll(2, up=1001.0) == {"up": "1.0", "down": "-Inf", "nan": "NaN"}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snaps, default_grace=GRACE, clock=lambda: 1000.0))
    static = spelled(
        generate_openmetrics(registry).decode(), "apscheduler_job_next_run_timestamp_seconds"
    )
    assert static == {"up": "1001.0", "down": "-Inf", "nan": "NaN"}
