"""The per-job encoded static part (exporter/sidecar/metrics/store.py) against prometheus_client.

``prometheus_client``'s encoders stay the reference: random snapshots (hostile label text,
odd floats, selections, history, backups, several stores) are rendered both ways, and the
bodies must be the same bytes and parse to the same samples, in the text format and in
OpenMetrics. Sequences of polls that keep, change, add and delete jobs check that kept lines
never go stale. On a real store, a poll in which one job changed re-encodes that job only.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable
from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import CollectorRegistry
from stores import write_jobs
from support import Database
from test_history_reader import History

from exporter.sidecar.config import load_config
from exporter.sidecar.health import overdue, overdue_jobs
from exporter.sidecar.metrics import store as store_module
from exporter.sidecar.metrics.collector import SnapshotCollector
from exporter.sidecar.metrics.families import FAMILIES
from exporter.sidecar.metrics.store import MetricStore
from exporter.sidecar.metrics.table import Store, fields_read
from exporter.sidecar.poller import StorePoller
from exporter.sidecar.snapshot import (
    SOURCES,
    BackupFiles,
    Heartbeat,
    JobRuns,
    JobView,
    SourceStatus,
    StoreSnapshot,
)
from exporter.sidecar.sources.history_rows import FINISHED
from exporter.sidecar.sources.history_tally import BUCKETS

GRACE = 30.0
BACKUP_IDS = {"default": "database_backup"}

# --- strategies ---------------------------------------------------------------------------------

texts = st.text(
    alphabet=st.one_of(
        st.sampled_from('ab_"\\\n{}=,# '),
        st.characters(blacklist_categories=("Cs",)),  # no lone surrogates: never encodable
    ),
    max_size=12,
)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**12), 10**12).map(float)
times = st.floats(min_value=-1e10, max_value=4e9, allow_nan=False) | st.none()
counts = st.integers(0, 10**6)


@st.composite
def job_views(draw: st.DrawFn, job_id: str) -> JobView:
    return JobView(
        id=job_id,
        next_run_time=draw(times),
        decoded=draw(st.booleans()),
        name=draw(texts),
        func=draw(texts),
        executor=draw(texts),
        trigger=draw(st.sampled_from(["cron", "interval", "date", "and", "or", "other"])),
        schedule=draw(texts),
        misfire_grace_time=draw(st.none() | st.floats(0, 1e6)),
        previous_fire_time=draw(times),
        text_replaced=draw(st.booleans()),
    )


@st.composite
def job_runs(draw: st.DrawFn, job_id: str) -> JobRuns:
    buckets = tuple(draw(st.lists(counts, min_size=len(BUCKETS) + 1, max_size=len(BUCKETS) + 1)))
    return JobRuns(
        job_id=job_id,
        runs={status: draw(counts) for status in FINISHED if draw(st.booleans())},
        bucket_counts=buckets,
        duration_sum=draw(st.floats(0, 1e9)),
        duration_count=draw(st.sampled_from([0, sum(buckets)])),
        last_run_success=draw(st.none() | st.booleans()),
        last_run_duration=draw(st.none() | numbers),
        last_success=draw(times),
        last_failure=draw(times),
        consecutive_failures=draw(counts),
        last_run_delay=draw(st.none() | numbers),
        running=draw(counts),
        running_since=draw(times),
    )


ids = st.lists(texts, min_size=0, max_size=8, unique=True).map(sorted)


@st.composite
def pools(draw: st.DrawFn) -> tuple[list[JobView], list[JobRuns]]:
    """Views and run statistics a sequence of polls picks from: several per id, so a job can
    stay the same object, change, leave and come back."""
    job_ids = draw(ids)
    views = [draw(job_views(job_id)) for job_id in job_ids for _ in range(draw(st.integers(1, 2)))]
    runs = [
        draw(job_runs(job_id)) for job_id in [*job_ids, "database_backup"] if draw(st.booleans())
    ]
    return views, runs


@st.composite
def snapshots(
    draw: st.DrawFn, name: str, pool: tuple[list[JobView], list[JobRuns]]
) -> StoreSnapshot:
    views, runs = pool
    chosen: dict[str, JobView] = {}
    for view in draw(st.lists(st.sampled_from(views), max_size=len(views))) if views else []:
        chosen[view.id] = view
    jobs = tuple(chosen[k] for k in sorted(chosen))
    history = (
        draw(st.none() | st.lists(st.sampled_from(runs), unique_by=lambda r: r.job_id))
        if runs
        else draw(st.none() | st.just([]))
    )
    sources = {
        source: SourceStatus(
            ok=draw(st.booleans()),
            duration=draw(st.floats(0, 100)),
            last_success=draw(times),
            errors_total=draw(counts),
        )
        for source in SOURCES
        if draw(st.booleans())
    }
    selected = None
    if draw(st.booleans()):
        selected = tuple(job for job in jobs if draw(st.booleans()))
    return StoreSnapshot(
        jobstore=name,
        taken_at=draw(st.floats(0, 4e9)),
        jobs=jobs,
        undecodable=draw(counts),
        ever_succeeded=draw(st.booleans()),
        sources=MappingProxyType(sources),
        history=None if history is None else tuple(history),
        invalid_history_rows=MappingProxyType(draw(st.dictionaries(texts, counts, max_size=2))),
        heartbeats=tuple(
            Heartbeat(draw(texts), "host", None, draw(st.sampled_from(["running", "paused"])), t)
            for t in draw(st.lists(st.floats(0, 4e9), max_size=2))
        ),
        selected=selected,
        excluded=MappingProxyType(
            draw(st.dictionaries(st.sampled_from(["filter", "limit"]), counts))
        ),
        backup_files=draw(
            st.none() | st.builds(BackupFiles, counts, times, st.none() | counts, counts, counts)
        ),
        poll_loop_restarts=draw(counts),
    )


STORE_NAMES = st.lists(
    st.sampled_from(["default", 'we"ird\\', "b"]), min_size=1, max_size=2, unique=True
)


# --- the two renderers ----------------------------------------------------------------------


def reference(snaps: list[StoreSnapshot]) -> tuple[bytes, bytes]:
    """The static part as prometheus_client encodes it: text, and OpenMetrics with # EOF."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        SnapshotCollector(
            lambda: snaps, default_grace=GRACE, backup_job_ids=BACKUP_IDS, part="static"
        )
    )
    return generate_latest(registry), generate_openmetrics(registry)


def store_for(current: list[list[StoreSnapshot]]) -> MetricStore:
    settings = SnapshotCollector(
        lambda: [], default_grace=GRACE, backup_job_ids=BACKUP_IDS
    ).settings
    return MetricStore(lambda: current[0], settings)


def samples(families: Iterable) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:  # type: ignore[type-arg]
    # repr: NaN equals NaN, and -0.0 stays apart from 0.0
    return [
        (s.name, tuple(sorted(s.labels.items())), repr(s.value))
        for family in families
        for s in family.samples
    ]


def assert_same(store: MetricStore, snaps: list[StoreSnapshot]) -> None:
    text, openmetrics = reference(snaps)
    mine_text = store.render(False)
    mine_om = store.render(True) + b"# EOF\n"
    assert mine_text == text
    assert mine_om == openmetrics
    # Gzipped: members kept per block of lines, recompressed only where lines changed.
    assert gzip.decompress(store.render_gzipped(False)) == text
    assert gzip.decompress(store.render_gzipped(True)) + b"# EOF\n" == openmetrics
    assert samples(parse_text(mine_text.decode())) == samples(parse_text(text.decode()))
    assert samples(parse_om(mine_om.decode())) == samples(parse_om(openmetrics.decode()))


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), STORE_NAMES)
def test_random_snapshots_render_alike(data: st.DataObject, names: list[str]) -> None:
    snaps = [data.draw(snapshots(name, data.draw(pools()))) for name in names]
    current = [snaps]
    store = store_for(current)
    assert_same(store, snaps)
    for snap in snaps:  # the inlined count keeps the health model's rule
        assert Store(snap, store.settings, 0).overdue_count == len(overdue_jobs(snap, GRACE))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job_views("j"), job_views("j"), st.none() | job_runs("j"), st.none() | job_runs("j"))
def test_what_a_family_declares_it_reads_is_all_its_samples_depend_on(
    view: JobView, other: JobView, runs: JobRuns | None, other_runs: JobRuns | None
) -> None:
    """The metric store skips a changed job's family when none of the fields the family's
    sample function declares (``table.reads``) changed: every other field of the view, and the
    run statistics unless declared, may change without changing its samples."""
    snap = StoreSnapshot("default", taken_at=1e9, jobs=(view,), ever_succeeded=True)
    store = Store(snap, store_for([[snap]]).settings, 1e9)
    declared = 0
    for family in FAMILIES:
        read = fields_read(family.per_job) if family.per_job is not None else None
        if read is None:
            continue
        declared += 1
        mixed = replace(other, **{name: getattr(view, name) for name in read if name != "runs"})
        mixed_runs = runs if "runs" in read else other_runs
        assert repr(list(family.per_job(store, view, runs))) == repr(
            list(family.per_job(store, mixed, mixed_runs))
        ), family.name
    assert declared >= 8  # the job's info, state and run families declare what they read


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), STORE_NAMES, st.integers(2, 5))
def test_kept_lines_follow_every_poll(data: st.DataObject, names: list[str], polls: int) -> None:
    follow_polls(data, names, polls)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), STORE_NAMES, st.integers(2, 5), st.integers(1, 3))
def test_kept_lines_follow_every_poll_across_blocks(
    data: st.DataObject, names: list[str], polls: int, block: int
) -> None:
    """Lines are kept gzipped per block of rows: with blocks of one to three rows, every change
    lands in blocks of its own, beside others, or across a boundary."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module, "BLOCK", block)
        follow_polls(data, names, polls)


def follow_polls(data: st.DataObject, names: list[str], polls: int) -> None:
    pool = {name: data.draw(pools()) for name in names}
    current: list[list[StoreSnapshot]] = [[]]
    store = store_for(current)
    last: dict[str, StoreSnapshot] = {}
    for _ in range(polls):
        # Each poll picks views and runs from the same pools: kept, changed, gone, back.
        present = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        current[0] = []
        for name in present:
            snap = data.draw(snapshots(name, pool[name]))
            if name in last and data.draw(st.booleans()):
                # The very same jobs; only the run history (and the rest) moved on.
                snap = replace(snap, jobs=last[name].jobs, selected=last[name].selected)
            last[name] = snap
            current[0].append(snap)
        assert_same(store, current[0])
        assert_same(store, current[0])  # the same poll again: nothing to encode


def test_extreme_floats_are_formatted_as_prometheus_client_does() -> None:
    values = [0.0, -0.0, 1e-300, 5e-324, 1e22, 123456789.0, 1234567.5, math.inf, -math.inf]
    views = tuple(
        JobView(id=f"j{i}", next_run_time=v, decoded=True, misfire_grace_time=abs(v))
        for i, v in enumerate(values)
    )
    snaps = [StoreSnapshot("default", taken_at=1e9, jobs=views, ever_succeeded=True)]
    assert_same(store_for([snaps]), snaps)


def test_a_job_is_overdue_from_the_first_poll_past_its_grace_however_little() -> None:
    """The same jobs, polled at later and later times: the store keeps, per job, from when it
    may be overdue, and asks the rule only of those jobs. Each must still be counted (and given
    its overdue seconds) at the first poll past its grace, by the smallest step a float takes,
    at small and large magnitudes and with its own grace or the default; one poll earlier it is
    not. A next run time that is not a number is never overdue and hides no other job."""
    jobs = (
        JobView(id="a", next_run_time=math.nan, decoded=True),  # first: sorts before the rest
        JobView(id="b", next_run_time=1e9 + 0.1, decoded=True),  # the default grace
        JobView(id="c", next_run_time=3.5e9 + 0.7, decoded=True, misfire_grace_time=1.0),
        JobView(id="d", next_run_time=12.25, decoded=True, misfire_grace_time=0.0),
        JobView(id="e", next_run_time=None, decoded=True),  # paused: never overdue
    )
    current = [[StoreSnapshot("default", taken_at=0.0, jobs=jobs, ever_succeeded=True)]]
    store = store_for(current)
    assert_same(store, current[0])
    for job in jobs[1:4]:
        assert job.next_run_time is not None
        grace = GRACE if job.misfire_grace_time is None else job.misfire_grace_time
        first = job.next_run_time + grace  # the first poll time the rule holds, by float steps
        while any(overdue([job], first, GRACE)):
            first = math.nextafter(first, -math.inf)
        while not any(overdue([job], first, GRACE)):
            first = math.nextafter(first, math.inf)
        for taken_at, expected in ((math.nextafter(first, -math.inf), False), (first, True)):
            snap = StoreSnapshot("default", taken_at=taken_at, jobs=jobs, ever_succeeded=True)
            current[0] = [snap]
            assert_same(store, current[0])
            assert (job in overdue_jobs(snap, GRACE)) is expected


@pytest.mark.parametrize("block", [1, 2, 3, 1024])
def test_changed_jobs_are_spliced_into_their_blocks(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same jobs in the same order, some changed: each changed job's lines are replaced in
    its block (first, middle or last of it; one or several per block; renamed, so its longer
    info line moves the lines after it), and the body is the reference's every time."""
    monkeypatch.setattr(store_module, "BLOCK", block)
    jobs = [
        JobView(id=f"j{i}", next_run_time=1e9 + i, decoded=True, name=f"n{i}", schedule="s")
        for i in range(7)
    ]
    current = [[StoreSnapshot("default", taken_at=1e9, jobs=tuple(jobs), ever_succeeded=True)]]
    store = store_for(current)
    assert_same(store, current[0])
    for step, changed in enumerate([(3,), (0, 1), (6,), (2, 4, 5), (0, 6), (1,)]):
        for i in changed:
            jobs[i] = replace(
                jobs[i],
                name=jobs[i].name + "-renamed" * (step % 3),
                next_run_time=None if step % 2 else 2e9 + i,
            )
        current[0] = [
            StoreSnapshot("default", taken_at=1e9 + step, jobs=tuple(jobs), ever_succeeded=True)
        ]
        assert_same(store, current[0])
        assert store.encoded == len(changed)


@pytest.mark.parametrize("block", [1, 2, 3, 1024])
def test_jobs_that_come_and_go_leave_the_others_lines_as_they_were(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs added, removed and changed in one poll: the unchanged jobs' lines are taken over in
    runs of neighbours (long and short, across block boundaries), the others encoded."""
    monkeypatch.setattr(store_module, "BLOCK", block)

    def job(name: str, at: float = 1e9) -> JobView:
        return JobView(id=name, next_run_time=at, decoded=True, name=name.upper(), schedule="s")

    polls = [
        [f"j{i}" for i in range(10)],
        ["j0", "j1", "j2", "j4", "j5", "j6", "j7", "j8", "j9"],  # one gone from the middle
        ["a", "j0", "j1", "j2", "j4", "j5", "j5a", "j6", "j7", "j8", "j9", "z"],  # came
        ["j1", "j2", "j4", "j5", "j5a", "j6", "j7", "j8"],  # both ends gone
        ["j1", "j2", "j4", "j5", "j5a", "j6", "j7", "j8"],  # the same, one changed below
        [],
        ["j1", "j2"],
    ]
    current: list[list[StoreSnapshot]] = [[]]
    store = store_for(current)
    for step, names in enumerate(polls):
        jobs = tuple(job(name, 2e9 if (step, name) == (4, "j5") else 1e9) for name in names)
        current[0] = [StoreSnapshot("default", taken_at=1e9, jobs=jobs, ever_succeeded=True)]
        assert_same(store, current[0])


# --- a real store ------------------------------------------------------------------------------


def test_a_poll_re_encodes_only_the_jobs_that_changed(sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url)
    history = History(sqlite_db)
    history.insert("cleanup_temp", "success", 0, 0.5)
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0])
    current = [[poller.poll()]]
    store = store_for(current)
    assert_same(store, current[0])
    assert store.encoded == 3  # first render: every job

    current[0] = [poller.poll()]
    assert_same(store, current[0])
    assert store.encoded == 0  # nothing changed in the store

    write_jobs(sqlite_db.url, jobs=[], pause=("report_gen",))
    current[0] = [poller.poll()]
    assert_same(store, current[0])
    assert store.encoded == 1  # the paused job only

    history.insert("cleanup_temp", "failed", 10, 12)  # only a run finished
    current[0] = [poller.poll()]
    assert_same(store, current[0])
    assert store.encoded == 1  # cleanup_temp, for its run series

    history.insert("cleanup_temp", "success", 20, 21)  # a run of another job finished
    write_jobs(sqlite_db.url, jobs=[], remove=("database_backup",))
    current[0] = [poller.poll()]
    body = store.render(False).decode()
    assert_same(store, current[0])
    assert store.encoded == 1  # cleanup_temp's run; the deleted job left with its lines
    assert 'job_id="database_backup"' not in body.split("apscheduler_backup_info")[0]
    poller.close()
    history.close()


def test_a_failed_render_leaves_nothing_half_kept() -> None:
    good = tuple(JobView(id=f"j{i}", next_run_time=1e9 + i, decoded=True) for i in range(3))
    current = [[StoreSnapshot("default", taken_at=1e9, jobs=good, ever_succeeded=True)]]
    store = store_for(current)
    assert_same(store, current[0])
    # A job is added whose name no encoder accepts: that render fails...
    bad = JobView(id="j1a", next_run_time=1e9, decoded=True, name="\ud800")
    jobs = (good[0], good[1], bad, good[2])
    current[0] = [StoreSnapshot("default", taken_at=2e9, jobs=jobs, ever_succeeded=True)]
    with pytest.raises(UnicodeEncodeError):
        store.render(False)
    with pytest.raises(UnicodeEncodeError):
        store.render(True)
    # ... and the next poll's body is whole and right, with nothing of the failed one.
    fixed = replace(bad, name="fixed")
    current[0] = [
        StoreSnapshot("default", taken_at=3e9, jobs=(good[0], fixed, good[2]), ever_succeeded=True)
    ]
    assert_same(store, current[0])
