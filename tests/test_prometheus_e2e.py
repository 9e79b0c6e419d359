"""End to end with a real Prometheus: scheduler -> history -> exporter -> Prometheus -> rules.

A real BackgroundScheduler, instrumented by the kit (history rows and heartbeats in a SQLite
file) and carrying the kit's real backup job, is read by a real `python -m exporter serve`
subprocess (polling every 0.5 s), which a real Prometheus scrapes every second while evaluating
`prometheus/alerts.yml` every second. Checked through Prometheus' HTTP API:

1. every query of the Grafana dashboard (and of its variables) answers without error, and with
   data, except the ones that are empty by design in a healthy system (EMPTY_WHEN_HEALTHY);
2. a backup into an unusable directory fires APSchedulerBackupFailed, the next good one clears it;
3. a healthy setup fires nothing;
4. with a second Prometheus over a fleet (two exporter replicas on one database, an exporter
   whose heartbeat source breaks, a stalled 10,000-job store): no overview query returns more
   than 50 series, replicas count once, the past-due panel shows the stalled store's jobs but
   never a job that fires every second, and a broken heartbeat source is reported as such, not
   as a dead scheduler.

The test copy of the rules differs from alerts.yml only in `for:` (see RULE_FOR). Conditions
that need a day of history cannot arise in a test that lasts seconds, so they are checked only
for not firing (see test_a_healthy_setup_fires_nothing).

Prometheus missing: skipped locally, failed under CI=true (`need_server`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prom_helpers import (
    JOB_DETAIL,
    LABEL_VALUES,
    RELEASE,
    DashboardQuery,
    Prometheus,
    dashboard,
    dashboard_queries,
    exporter,
    fast_rules,
    prometheus,
    prometheus_binary,
    query_variables,
    regex_escape,
    reset_jobs,
    shipped_rules,
    substitute,
    wait_for,
)
from support import need_server

from bench.stores import build_store
from exporter.kit import instrument, register_backup_job
from exporter.kit.engine import create_kit_engine

pytestmark = pytest.mark.timeout(180)

BACKUP = "database_backup"
SCRAPE_JOB = "jobstore-exporter"
ROOT = Path(__file__).resolve().parent.parent

# The shipped `for:` durations (5 to 30 minutes) are longer than this whole test, so the copy
# of the rules Prometheus loads has `for: 0s`: an alert fires at the first evaluation where its
# expression holds. Expressions are copied unchanged. Two rules keep a short `for:` instead:
# in the `expected_run` checks the `for:` is the grace a run gets to show up in the history
# after its fire time (their comments in alerts.yml say so). Without any, they flicker for a
# job that fires every second: a poll that lands between the fire time and the history write
# sees "due, not finished, not running" for that one poll (observed: every few seconds with
# three 1-2 s jobs). 5 s is far more than that gap and far less than any wait here.
RULE_FOR = "0s"
RULE_FOR_GRACE = "5s"
GRACE_RULES = {
    ("APSchedulerBackupMissing", "expected_run"),
    ("APSchedulerJobMissedRuns", "expected_run"),
}
# A source failing for a moment (backup_dir replaced by a file while a backup fails on purpose)
# is not a failing source; the shipped `for` is 15 minutes.
SOURCE_DOWN = ("JobstoreExporterSourceDown", "")
SOURCE_DOWN_FOR = "10s"

# Dashboard queries that return nothing in a healthy system, by design (panel titles). For these
# only the answer's status is checked (the query parses and evaluates), not that it has data.
EMPTY_WHEN_HEALTHY = {
    # Overview: the worst jobs, when no job is failing, overdue or has failed runs. (The flaky
    # job failed once before the exporter started, so its counters never saw that failure.)
    "Past-due jobs",
    "Failing jobs",
    "Jobs with the most failed, missed or skipped runs",
}
# The drill-down shows one job: every query must return data for at least one of these.
DETAIL_JOBS = ("hold", "work", "flaky")

# The jobs of the scheduler, besides the backup job.
JOB_IDS = {"tick", "work", "flaky", "hold", "nightly", "paused_job"}


@dataclass(frozen=True)
class History:
    """The scheduler's side: its history rows, read straight from the SQLite file."""

    scheduler: BackgroundScheduler
    db_path: Path

    def trigger(self, job_id: str) -> None:
        """Run a job now (its trigger then resumes as usual)."""
        self.scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        """The job's history rows, oldest first."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            try:
                rows = db.execute(
                    "SELECT * FROM job_execution WHERE job_id = ? ORDER BY id", (job_id,)
                ).fetchall()
            except sqlite3.OperationalError:  # table not created yet, or briefly locked
                return []
        return [dict(r) for r in rows]

    def finished_runs(self, job_id: str) -> list[dict[str, Any]]:
        return [r for r in self.runs(job_id) if r["status"] != "running"]

    def run_backup(self, details: Callable[[], str] | None = None) -> dict[str, Any]:
        """Trigger the backup job and return its history row once the run has finished."""
        before = len(self.finished_runs(BACKUP))
        self.trigger(BACKUP)
        rows = wait_for(
            lambda: self.finished_runs(BACKUP)[before:], "a backup run", details=details
        )
        return rows[-1]


@dataclass(frozen=True)
class Stack:
    history: History
    prom: Prometheus
    backup_dir: Path
    target: str  # the exporter's host:port, Prometheus' `instance` label
    workdir: Path

    def run_backup(self) -> dict[str, Any]:
        return self.history.run_backup(self.logs)

    def logs(self) -> str:
        """The tails of the exporter's and Prometheus' logs, for failure messages."""
        parts = []
        for name in ("exporter.log", "prometheus.log"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"\n--- {name} (tail) ---\n{path.read_text()[-3000:]}")
        return "".join(parts)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = prometheus_binary()
    if binary is None:
        need_server("prometheus not installed (Debian package `prometheus`)")
        raise AssertionError  # unreachable: need_server skips or fails
    workdir = tmp_path_factory.mktemp("prometheus-e2e")
    db_path = workdir / "app.sqlite"
    db_url = f"sqlite:///{db_path}"
    backup_dir = workdir / "backups"
    rules = workdir / "alerts-test.yml"
    fast_rules(
        rules,
        RULE_FOR,
        {**{key: RULE_FOR_GRACE for key in GRACE_RULES}, SOURCE_DOWN: SOURCE_DOWN_FOR},
    )

    reset_jobs()
    engine = create_kit_engine(db_url, sqlite_wal=True)
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine)}, timezone="UTC"
    )
    instrument(scheduler, engine, heartbeat_interval=0.5)
    register_backup_job(scheduler, database_url=db_url, backup_dir=backup_dir)
    # Healthy jobs: two frequent ones (rates, durations), one that failed once before the
    # exporter started and has succeeded since, one with a run in progress after a finished
    # one (`hold`, released at the end: the "running" panels), one daily job not due during
    # the test, and a paused one. A late start on a loaded machine must not count as missed:
    # APScheduler's default grace is 1 s.
    grace = {"misfire_grace_time": 30}
    scheduler.add_job("sample_jobs:noop", IntervalTrigger(seconds=1), id="tick", **grace)
    scheduler.add_job("time:sleep", IntervalTrigger(seconds=2), args=[0.3], id="work", **grace)
    scheduler.add_job("prom_helpers:fail_first", IntervalTrigger(seconds=1), id="flaky", **grace)
    scheduler.add_job(
        "prom_helpers:hold", IntervalTrigger(hours=1), id="hold",
        next_run_time=datetime.now(UTC),
    )  # fmt: skip
    scheduler.add_job("sample_jobs:noop", CronTrigger(hour=3, minute=30), id="nightly")
    scheduler.add_job(
        "sample_jobs:noop", IntervalTrigger(minutes=5), id="paused_job", next_run_time=None
    )
    scheduler.start()
    with contextlib.ExitStack() as processes:
        try:
            history = History(scheduler, db_path)
            wait_for(
                lambda: (
                    [r["status"] for r in history.finished_runs("flaky")][:2]
                    == ["failed", "success"]
                ),
                "the flaky job to fail once and then succeed",
            )
            wait_for(lambda: history.finished_runs("hold"), "the first run of `hold` to end")
            history.trigger("hold")
            wait_for(lambda: len(history.runs("hold")) == 2, "the held run to start")
            first = history.run_backup()
            assert first["status"] == "success", first
            # The exporter starts after the flaky job's failure: it is in the last_* gauges
            # but not in the counters (docs/metrics.md), like a failure from before a restart.
            target = processes.enter_context(exporter(db_url, backup_dir, workdir / "exporter.log"))
            prom = processes.enter_context(prometheus(binary, target, rules, workdir))
            result = Stack(history, prom, backup_dir, target, workdir)
            wait_for(
                lambda: (
                    prom.value(f'min(up{{job="{SCRAPE_JOB}"}})') == 1
                    and prom.value("apscheduler_up") == 1
                ),
                "Prometheus to scrape the exporter",
                details=result.logs,
            )
            yield result
        finally:
            RELEASE.set()
            scheduler.shutdown(wait=True)
            engine.dispose()
            shutil.rmtree(workdir / "data", ignore_errors=True)


def assert_rules_healthy(prom: Prometheus) -> None:
    """Every rule of alerts.yml is loaded and its last evaluation raised no error."""
    loaded = prom.rules()
    assert sorted((r["name"], r["labels"].get("check", "")) for r in loaded) == shipped_rules()
    broken = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert broken == []


def assert_annotations_render(alerts: list[dict[str, Any]]) -> None:
    for alert in alerts:
        for key, text in alert["annotations"].items():
            assert "error expanding template" not in text, (alert["labels"], key, text)
            assert "<no value>" not in text, (alert["labels"], key, text)


def wait_for_samples(prom: Prometheus, count: int) -> None:
    """At least `count` scrapes in the last minute: enough for rate() and increase()."""
    wait_for(
        lambda: (prom.value(f'count_over_time(up{{job="{SCRAPE_JOB}"}}[1m])') or 0) >= count,
        f"{count} scrapes",
    )


# --- 1. the dashboard -----------------------------------------------------------------------


def resolve_variables(prom: Prometheus) -> dict[str, list[str]]:
    """The options of each query variable, in chain order, each query run with every option
    of the variables before it selected (Grafana's "All" is `.+`, which selects the same)."""
    options: dict[str, list[str]] = {}
    for variable in query_variables(dashboard(JOB_DETAIL)):
        match = LABEL_VALUES.match(variable["query"])
        assert match is not None, variable["query"]
        selector = substitute(match["match"], {name: ".+" for name in options})
        values = prom.label_values(match["label"], selector)
        assert values, f"variable {variable['name']}: {variable['query']} lists nothing"
        options[variable["name"]] = values
    return options


def formatted(values: list[str]) -> str:
    """A multi-value selection as Grafana writes it into a regex matcher."""
    escaped = [regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def panel_title(query: DashboardQuery) -> str:
    return query.panel.split(" ", 1)[1].rsplit(" ", 1)[0]


def check_queries(
    prom: Prometheus, queries: list[DashboardQuery], selections: dict[str, dict[str, str]]
) -> tuple[list[str], set[str]]:
    """Run each query under each selection: the errors, and the panels that had data."""
    problems = []
    with_data = set()
    for selection, variables in selections.items():
        for query in queries:
            expr = substitute(query.expr, variables)
            result = prom.query(expr)
            where = f"[{selection}] {query.panel}: {expr}"
            if result.status != "success":
                problems.append(f"{where}\n    error: {result.error}")
                continue
            ranged = prom.query_range(expr, seconds=30) if query.range else None
            if ranged is not None and ranged.status != "success":
                problems.append(f"{where} (range)\n    error: {ranged.error}")
                continue
            if result.has_number and (ranged is None or ranged.has_number):
                with_data.add(f"{selection} {query.panel}")
    return problems, with_data


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    prom = stack.prom
    # Frequent jobs have run since the first scrape, and rates have at least two samples.
    wait_for_samples(prom, 5)
    for job_id in ("tick", "work", "flaky"):
        runs = f'sum(increase(apscheduler_job_runs_total{{job_id="{job_id}"}}[1m]))'
        wait_for(partial(prom.value, runs), f"counted runs of {job_id}")

    options = resolve_variables(prom)
    assert options == {
        "job": [SCRAPE_JOB],
        "instance": [stack.target],
        "jobstore": ["default"],
        "job_id": sorted(JOB_IDS | {BACKUP}),
    }
    store = {name: values for name, values in options.items() if name != "job_id"}
    selections = {
        "All": {name: ".+" for name in store},  # the overview's default: allValue `.+`
        "every value selected": {name: formatted(values) for name, values in store.items()},
    }
    overview = dashboard_queries(dashboard())
    assert len(overview) > 30
    titles = {panel_title(q) for q in overview}
    assert titles >= EMPTY_WHEN_HEALTHY, "EMPTY_WHEN_HEALTHY names panels the overview lacks"
    problems, with_data = check_queries(prom, overview, selections)
    for selection in selections:
        missing = [
            q.panel
            for q in overview
            if panel_title(q) not in EMPTY_WHEN_HEALTHY
            and f"{selection} {q.panel}" not in with_data
        ]
        problems += [f"[{selection}] {panel}: no data" for panel in missing]

    # The drill-down, one job at a time as its single-select variable allows.
    detail = dashboard_queries(dashboard(JOB_DETAIL))
    per_job = {
        job_id: {**selections["All"], "job_id": regex_escape(job_id)} for job_id in DETAIL_JOBS
    }
    detail_problems, detail_data = check_queries(prom, detail, per_job)
    problems += detail_problems
    for query in detail:
        if not any(f"{job_id} {query.panel}" in detail_data for job_id in DETAIL_JOBS):
            problems.append(f"[{'/'.join(DETAIL_JOBS)}] {query.panel}: no data for any job")
    assert problems == [], "\n".join(problems)


# --- 2. a failed backup ---------------------------------------------------------------------


def backup_failed_alerts(prom: Prometheus) -> list[dict[str, Any]]:
    return [
        a
        for a in prom.alerts()
        if a["labels"]["alertname"] == "APSchedulerBackupFailed" and a["state"] == "firing"
    ]


@contextlib.contextmanager
def unusable(directory: Path) -> Iterator[None]:
    """`directory` replaced by a plain file (works as root too, where modes do not stop
    writes); the directory and the backups in it come back afterwards."""
    aside = directory.with_name(directory.name + ".aside")
    directory.rename(aside)
    directory.write_text("a file where the backup volume should be\n")
    try:
        yield
    finally:
        directory.unlink()
        aside.rename(directory)


def test_failed_backup_fires_and_the_next_good_one_clears(stack: Stack) -> None:
    prom = stack.prom
    wait_for(
        lambda: prom.value("apscheduler_backup_last_run_success") == 1,
        "a successful backup in Prometheus",
    )
    assert backup_failed_alerts(prom) == []

    with unusable(stack.backup_dir):
        failed = stack.run_backup()
    assert failed["status"] == "failed", failed
    assert "is not a directory" in failed["error_message"], failed["error_message"]

    alerts = wait_for(
        lambda: backup_failed_alerts(prom), "APSchedulerBackupFailed to fire", details=stack.logs
    )
    assert prom.value("apscheduler_backup_last_run_success") == 0
    (alert,) = alerts
    assert alert["labels"] == {
        "alertname": "APSchedulerBackupFailed",
        "check": "last_run",
        "severity": "critical",
        "job": SCRAPE_JOB,
        "jobstore": "default",
    }
    # The value is the failure time, which the description shows.
    failure_time = prom.value("apscheduler_backup_last_failure_timestamp_seconds")
    assert failure_time is not None
    assert float(alert["value"]) == pytest.approx(failure_time)
    assert " failed at " in alert["annotations"]["description"]
    assert_annotations_render(prom.alerts())
    # One problem, one alert: the failed backup job raises no job alert, and backup_dir's
    # last known files keep the directory checks quiet.
    assert prom.firing() == {("APSchedulerBackupFailed", "last_run")}

    good = stack.run_backup()
    assert good["status"] == "success", good
    wait_for(
        lambda: (
            prom.value("apscheduler_backup_last_run_success") == 1
            and not backup_failed_alerts(prom)
        ),
        "APSchedulerBackupFailed to clear",
        details=stack.logs,
    )
    assert prom.firing() == set()
    assert_rules_healthy(prom)


# --- 3. a healthy setup ---------------------------------------------------------------------

# Conditions a test lasting seconds cannot bring about, so only their staying quiet is checked:
# - APSchedulerBackupFailed `no_result`: the backup job present 25-26 h ago (`offset 25h`), or a
#   backup result seen within 26 h that has vanished;
# - APSchedulerBackupMissing `last_success` and `backup_dir_stale_file`: ages over 26 h;
# - APSchedulerJobStuck: a run going for over an hour (`hold` runs all along, for seconds);
# - APSchedulerSchedulerDown `heartbeat`: a heartbeat older than 5 minutes.
# JobstoreExporterDown `target_absent` does fire with `for: 0s` before Prometheus' first scrape
# (absent() of a job it has not scraped yet); the shipped `for: 10m` covers that, and the
# fixture waits for the first scrapes.

OBSERVE = 5.0  # seconds of evaluations (one per second) that must all be quiet


def test_a_healthy_setup_fires_nothing(stack: Stack) -> None:
    prom = stack.prom
    assert stack.run_backup()["status"] == "success"
    newest = max(r["finished_at"] for r in stack.history.finished_runs(BACKUP))
    finished = datetime.fromisoformat(newest).replace(tzinfo=UTC).timestamp()
    wait_for(
        lambda: (
            (prom.value("apscheduler_backup_last_success_timestamp_seconds") or 0)
            >= math.floor(finished)
        ),
        "the new backup in Prometheus",
    )
    wait_for(lambda: prom.value("apscheduler_scheduler_running") == 1, "a live heartbeat")
    healthy_since = time.time()
    wait_for(lambda: prom.evaluations_since(healthy_since), "rule evaluations after that")

    deadline = time.monotonic() + OBSERVE
    while time.monotonic() < deadline:
        alerts = prom.alerts()
        assert [a["labels"] for a in alerts if a["state"] == "firing"] == []
        # The expected_run rules may be pending for an instant (RULE_FOR_GRACE), nothing else.
        pending = {(a["labels"]["alertname"], a["labels"].get("check")) for a in alerts}
        assert pending <= GRACE_RULES, pending
        time.sleep(0.2)

    # Prometheus' own record of every evaluation since: no alert was firing at any of them.
    window = time.time() - healthy_since
    fired = prom.query_range('ALERTS{alertstate="firing"}', seconds=window)
    assert fired.status == "success" and fired.result == [], fired.result
    assert_rules_healthy(prom)
    # The scheduler did work meanwhile: this is a live system, not an idle one.
    assert (prom.value('sum(increase(apscheduler_job_runs_total{status="success"}[1m]))') or 0) > 3
    assert prom.value('apscheduler_job_running{job_id="hold"}') == 1


# --- 4. replicas, a broken heartbeat source, a stalled 10k-job store ----------------------------
#
# A second Prometheus scrapes a fleet:
# - `default`: one database with a live scheduler (a job every second), read by two exporter
#   replicas;
# - `solo`: the same database read by one more exporter whose heartbeat source breaks mid-test
#   (its heartbeat table turns unreadable, as when the monitoring role loses SELECT);
# - `big`: a 10,000-job store (tests' copy of bench.stores) whose scheduler has stalled: some
#   fire times lie in the past and nothing advances them.
# Its rules are the mixin's, rendered with every `for` at 0 s (but the failing-source one, 5 s)
# and a 5 s heartbeat limit, so what would page within seconds does here.

FLEET_CONFIG = """{
  selector: 'job=~"jobstore-exporter|jobstore-big"',
  grafanaUrl: '',
  heartbeatMaxAgeSeconds: 5,
  backupFailedFor: '0s', backupNoResultFor: '0s', backupExpectedRunFor: '5s',
  backupDirFor: '0s', backupEmptyFileFor: '0s', jobOverdueFor: '0s', jobFailingFor: '0s',
  jobFailingRatioFor: '0s', jobMissedRunsFor: '0s', jobExpectedRunFor: '5s', jobStuckFor: '0s',
  schedulerDownFor: '0s', schedulerOverdueFor: '0s', schedulersDuplicateFor: '0s',
  jobStoreDownFor: '0s', sourceDownFor: '5s', exporterDownFor: '0s', exporterAbsentFor: '0s',
  undecodableFor: '0s',
}"""
BIG_JOBS = 10_000
STALLED = 40  # jobs of `big` whose fire time passed 10 minutes ago
MAX_SERIES = 50  # no overview query may return more, whatever the number of jobs


def render_mixin() -> Any:
    spec = importlib.util.spec_from_file_location("mixin_render", ROOT / "mixin" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Fleet:
    prom: Prometheus
    db_path: Path
    replicas: tuple[str, str]
    solo: str
    workdir: Path

    def logs(self) -> str:
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            parts.append(f"\n--- {path.name} (tail) ---\n{path.read_text()[-2000:]}")
        return "".join(parts)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    binary = prometheus_binary()
    if binary is None:
        need_server("prometheus not installed (Debian package `prometheus`)")
        raise AssertionError  # unreachable: need_server skips or fails
    try:
        render = render_mixin()
        rules_text = render.alerts(FLEET_CONFIG)
    except Exception as exc:  # jsonnet missing: the mixin cannot be rendered
        need_server(f"cannot render the mixin: {exc}")
        raise
    workdir = tmp_path_factory.mktemp("prometheus-fleet")
    rules = workdir / "fleet-alerts.yml"
    rules.write_text(rules_text, encoding="utf-8")

    big_url = f"sqlite:///{workdir / 'big.sqlite'}"
    build_store(big_url, BIG_JOBS)
    big = sa.create_engine(big_url)
    with big.begin() as db:
        ids = db.execute(
            sa.text(
                "SELECT id FROM apscheduler_jobs WHERE next_run_time IS NOT NULL ORDER BY id "
                "LIMIT :n"
            ),
            {"n": STALLED},
        ).scalars()
        db.execute(
            sa.text("UPDATE apscheduler_jobs SET next_run_time = :t WHERE id = :id"),
            [{"t": time.time() - 600, "id": job_id} for job_id in list(ids)],
        )
    big.dispose()

    db_path = workdir / "app.sqlite"
    db_url = f"sqlite:///{db_path}"
    engine = create_kit_engine(db_url, sqlite_wal=True)
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine)}, timezone="UTC"
    )
    instrument(scheduler, engine, heartbeat_interval=0.5)
    grace = {"misfire_grace_time": 30}
    scheduler.add_job("sample_jobs:noop", IntervalTrigger(seconds=1), id="tick", **grace)
    scheduler.add_job("time:sleep", IntervalTrigger(seconds=2), args=[0.2], id="work", **grace)
    scheduler.start()
    with contextlib.ExitStack() as processes:
        try:
            with engine.begin() as db:  # the solo exporter reads heartbeats through a view
                wait_for(
                    lambda: sa.inspect(engine).has_table("scheduler_heartbeat"),
                    "the kit's heartbeat table",
                )
                db.execute(
                    sa.text("CREATE VIEW solo_heartbeat AS SELECT * FROM scheduler_heartbeat")
                )
            a = processes.enter_context(exporter(db_url, None, workdir / "replica-a.log"))
            # Polling every 2 s, this replica serves a fire time of tick that has passed for
            # part of every poll interval: a scrape-time judgement would see tick past due.
            b = processes.enter_context(exporter(db_url, None, workdir / "replica-b.log", poll=2))
            solo = processes.enter_context(
                exporter(
                    db_url, None, workdir / "solo.log", args=("--jobstore", "solo"),
                    env={
                        "JOBSTORE_EXPORTER_HEARTBEAT_TABLE": "solo_heartbeat",
                        "JOBSTORE_EXPORTER_HEARTBEAT_TIMEOUT": "2",
                    },
                )
            )  # fmt: skip
            s = processes.enter_context(
                exporter(big_url, None, workdir / "big.log", args=("--jobstore", "big"), poll=5)
            )
            targets = {SCRAPE_JOB: ([a, b, solo], "1s"), "jobstore-big": ([s], "5s")}
            prom = processes.enter_context(prometheus(binary, targets, rules, workdir))
            result = Fleet(prom, db_path, (a, b), solo, workdir)
            wait_for(
                lambda: (
                    prom.value("count(up == 1)") == 4
                    and prom.value('count(apscheduler_up{jobstore="big"} == 1)') == 1
                    and prom.value('max(apscheduler_scheduler_running{jobstore="solo"})') == 1
                ),
                "Prometheus to scrape the fleet",
                timeout=90,
                details=result.logs,
            )
            yield result
        finally:
            scheduler.shutdown(wait=True)
            engine.dispose()
            shutil.rmtree(workdir / "data", ignore_errors=True)


def overview_selection(store: str = ".+") -> dict[str, str]:
    return {"job": ".+", "instance": ".+", "jobstore": store}


def overview_query(title: str, ref: str = "A") -> str:
    (query,) = [q for q in dashboard_queries(dashboard()) if q.panel.endswith(f" {title} {ref}")]
    return query.expr


def test_no_overview_query_returns_more_than_50_series_at_10k_jobs(fleet: Fleet) -> None:
    prom = fleet.prom
    assert (prom.value('max(apscheduler_jobs{jobstore="big", state="active"})') or 0) > 1000
    assert (prom.value('count(apscheduler_job_info{jobstore="big"})') or 0) == BIG_JOBS
    assert not any(v["name"] == "job_id" for v in query_variables(dashboard()))
    too_many = []
    for query in dashboard_queries(dashboard()):
        expr = substitute(query.expr, overview_selection())
        result = prom.query(expr)
        assert result.status == "success", (query.panel, result.error)
        count = len(result.result) if result.result_type == "vector" else 1
        if query.range:
            ranged = prom.query_range(expr, seconds=30, step="5s")
            assert ranged.status == "success", (query.panel, ranged.error)
            count = max(count, len(ranged.result))
        if count > MAX_SERIES:
            too_many.append(f"{query.panel}: {count} series")
    # The drill-down shows one job of the 10k, picked in its single-select variable.
    (one,) = prom.label_values("job_id", 'apscheduler_job_info{jobstore="big"}')[:1]
    for query in dashboard_queries(dashboard(JOB_DETAIL)):
        variables = {**overview_selection("big"), "job_id": regex_escape(one)}
        result = prom.query(substitute(query.expr, variables))
        assert result.status == "success", (query.panel, result.error)
        if len(result.result) > MAX_SERIES:
            too_many.append(f"{query.panel} ({one}): {len(result.result)} series")
    assert too_many == []


def test_replicas_count_once(fleet: Fleet) -> None:
    prom = fleet.prom
    default = overview_selection("default")
    wait_for(lambda: prom.value('count(apscheduler_up{jobstore="default"})') == 2, "2 replicas")
    assert prom.value(substitute(overview_query("Jobs"), default)) == 2  # tick and work
    assert prom.value(substitute(overview_query("Schedulers running"), default)) == 1
    assert prom.value(substitute(overview_query("Runs in progress"), default)) is not None
    # Alerts about stores carry no instance: two replicas never make two alerts.
    for alert in prom.alerts():
        if alert["labels"]["alertname"] != "JobstoreExporterDown":
            assert "instance" not in alert["labels"], alert["labels"]


def test_past_due_panel_shows_stalled_jobs_but_never_a_one_second_job(fleet: Fleet) -> None:
    """Judged at poll time: the job that fires every second never shows between polls, though
    its scrape-time delta dips below zero (what the panel used to read); the stalled store's
    jobs do show."""
    prom = fleet.prom
    panel = substitute(overview_query("Past-due jobs"), overview_selection())
    started = time.time()
    wait_for(
        lambda: (
            (
                prom.value(
                    'min(min_over_time(apscheduler_job_next_run_delta_seconds{jobstore="default", '
                    'job_id="tick"}[30s]))'
                )
                or 0
            )
            < 0
        ),
        "a scrape between a fire time of tick and the next poll",
        timeout=60,
    )
    time.sleep(max(0.0, 10 - (time.time() - started)))
    ranged = prom.query_range(panel, seconds=time.time() - started + 1)
    assert ranged.status == "success", ranged.error
    shown = {(s["metric"].get("jobstore"), s["metric"].get("job_id")) for s in ranged.result}
    assert not [key for key in shown if key[0] == "default"], shown
    now = prom.query(panel)
    stalled = [s for s in now.result if s["metric"]["jobstore"] == "big"]
    assert len(stalled) == 10  # the panel's top 10 of the 40 stalled jobs
    assert all(570 <= float(s["value"][1]) <= 900 for s in stalled), stalled


def test_broken_heartbeat_source_reports_the_source_not_a_dead_scheduler(fleet: Fleet) -> None:
    prom = fleet.prom
    engine = sa.create_engine(f"sqlite:///{fleet.db_path}")
    try:
        with engine.begin() as db:  # SELECT on the heartbeat table fails from now on
            db.execute(sa.text("DROP VIEW solo_heartbeat"))
            db.execute(sa.text("CREATE TABLE solo_heartbeat (unrelated INTEGER)"))
    finally:
        engine.dispose()
    solo = '{jobstore="solo"}'
    wait_for(
        lambda: (
            prom.value('max(jobstore_exporter_source_up{jobstore="solo", source="heartbeats"})')
            == 0
            and prom.value(f"max(apscheduler_scheduler_running{solo})") == 0
            and (
                prom.value(
                    f"time() - max(apscheduler_scheduler_last_heartbeat_timestamp_seconds{solo})"
                )
                or 0
            )
            > 6
        ),
        "the solo exporter's heartbeat to age past the 5 s limit",
        timeout=60,
        details=fleet.logs,
    )
    source_down = ("JobstoreExporterSourceDown", "solo", "heartbeats")

    def firing() -> set[tuple[str, str, str]]:
        return {
            (
                a["labels"]["alertname"],
                a["labels"].get("jobstore", ""),
                a["labels"].get("source", ""),
            )
            for a in prom.alerts()
            if a["state"] == "firing"
        }

    wait_for(lambda: source_down in firing(), "JobstoreExporterSourceDown", details=fleet.logs)
    since = time.time()
    wait_for(lambda: prom.evaluations_since(since), "rule evaluations after that")
    down = prom.query_range(
        'ALERTS{alertname="APSchedulerSchedulerDown", jobstore=~"solo|default"}',
        seconds=time.time() - since + 5,
    )
    assert down.status == "success" and down.result == [], down.result
    # The scheduler runs on, as its other readers see.
    assert prom.value('max(apscheduler_scheduler_running{jobstore="default"})') == 1
