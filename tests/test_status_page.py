"""The status page (`/`) and `/api/status`, served by the real app over a real store.

The store is written by a real APScheduler (plus a paused job with a hostile name), the history
table gets rows the way Aegis writes them, and the heartbeat table two scheduler processes. The
JSON must match what APScheduler itself says; the page must escape what came from the database
and render in a real browser (headless Chromium) as a non-blank page, in light and dark mode.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from apscheduler.triggers.cron import CronTrigger
from pages_support import App, Page, Runs, many_jobs, serve
from stores import SEED_JOBS, write_jobs
from support import Database, need_server
from test_history_reader import History, ts

from exporter.kit.backup import backup_database
from exporter.shared.tables import heartbeat_table
from exporter.sidecar import wording
from exporter.sidecar.config import load_config
from exporter.sidecar.health import assess
from exporter.sidecar.poller import StorePoller
from exporter.sidecar.serving.server import create_app
from exporter.sidecar.snapshot import JobRuns, JobView, SourceStatus, StoreSnapshot
from exporter.sidecar.web.status import StatusOptions, build_status, render_html

HOSTILE_NAME = '<script>alert("name")</script> & Sons'
HOSTILE_ERROR = "<img src=x onerror=alert(1)> disk full: <b>'/var/backups'</b> & more"
EVIL_JOB = {
    "func": "sample_jobs:noop",
    "trigger": CronTrigger(hour=4, minute=30, timezone="UTC"),
    "id": "evil_job",
    "name": HOSTILE_NAME,
}
CSP = "default-src 'none'; style-src 'unsafe-inline'"


@dataclass
class Running:
    server: TestServer
    pollers: list[StorePoller]
    next_runs: dict[str, float | None]  # as APScheduler itself reported them

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def get(self, path: str) -> tuple[int, dict[str, str], str]:
        async with ClientSession() as session, session.get(self.url(path)) as resp:
            return resp.status, dict(resp.headers), await resp.text()

    async def status(self) -> dict[str, Any]:
        code, headers, text = await self.get("/api/status")
        assert code == 200
        assert headers["Content-Type"].startswith("application/json")
        return json.loads(text)  # type: ignore[no-any-return]


async def start(url: str, next_runs: dict[str, float | None]) -> AsyncIterator[Running]:
    config = load_config(db_url=url, poll_interval=3600)
    pollers = [StorePoller(store) for store in config.stores]
    server = TestServer(create_app(config, pollers), host="127.0.0.1")
    await server.start_server()
    try:
        # The app polls once at start, in a worker thread; wait for it instead of polling
        # alongside it (a poller is not meant to be read by two threads at once).
        deadline = time.monotonic() + 20
        while not all(p.snapshot.sources for p in pollers):
            assert time.monotonic() < deadline, "the first poll did not finish"
            await asyncio.sleep(0.02)
        yield Running(server, pollers, next_runs)
    finally:
        await server.close()


def add_history(db: Database) -> None:
    history = History(db)
    try:
        history.insert("database_backup", "success", 0, 12.5)
        history.insert("cleanup_temp", "success", 0, 0.4)
        history.insert("cleanup_temp", "failed", 100, 101.5, error_message="first")
        history.insert("cleanup_temp", "failed", 200, 203, error_message=HOSTILE_ERROR)
        history.insert("report_gen", "success", 50, 52)
    finally:
        history.close()


def add_heartbeats(db: Database) -> None:
    engine = db.engine()
    table = heartbeat_table(sa.MetaData())
    table.metadata.create_all(engine)
    now = datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as the kit writes
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"scheduler_id": "web-1:100", "host": "web-1", "pid": 100, "state": "running",
                 "started_at": now - timedelta(hours=1), "last_seen": now},
                {"scheduler_id": "web-2:200", "host": "web-2", "pid": 200, "state": "running",
                 "started_at": now - timedelta(hours=2), "last_seen": now - timedelta(minutes=10)},
            ],
        )  # fmt: skip
    engine.dispose()


@pytest.fixture
async def app(sqlite_db: Database) -> AsyncIterator[Running]:
    next_runs = write_jobs(sqlite_db.url, [*SEED_JOBS, EVIL_JOB], pause=("evil_job",))
    add_history(sqlite_db)
    add_heartbeats(sqlite_db)
    async for running in start(sqlite_db.url, next_runs):
        yield running


def iso_matches(item: dict[str, Any], key: str) -> None:
    """``key`` (ISO-8601 UTC) and ``key_unix`` name the same second."""
    iso, unix = item[key], item[f"{key}_unix"]
    if unix is None:
        assert iso is None
        return
    parsed = datetime.fromisoformat(iso)
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.timestamp() == pytest.approx(unix, abs=1)


# -- JSON ---------------------------------------------------------------------------------------


async def test_api_status_matches_the_store(app: Running) -> None:
    before = time.time()
    status = await app.status()
    assert status["schema_version"] == 1 and status["healthy"] is True
    assert abs(status["generated_at_unix"] - before) < 30
    iso_matches(status, "generated_at")
    [store] = status["jobstores"]
    snapshot = app.pollers[0].snapshot
    assert store["message"] == assess(snapshot).message == "Scheduler running with 4 tasks"
    assert store["reachable"] and store["healthy"] and store["error"] is None
    assert store["tasks"] == {"total": 4, "active": 3, "paused": 1}
    assert store["overdue"] == [] and store["undecodable"] == 0

    jobs = {job["job_id"]: job for job in store["jobs"]}
    assert set(jobs) == set(app.next_runs) == {
        "database_backup", "cleanup_temp", "report_gen", "evil_job"
    }  # fmt: skip
    now = status["generated_at_unix"]
    for job_id, expected in app.next_runs.items():
        job = jobs[job_id]
        iso_matches(job, "next_run_time")
        if expected is None:
            assert job["paused"] and job["next_run_time_unix"] is None and job["until"] is None
            continue
        assert not job["paused"]
        assert job["next_run_time_unix"] == pytest.approx(expected, abs=1e-3)
        assert job["seconds_until"] == pytest.approx(expected - now, abs=0.01)
        assert re.fullmatch(r"in \d+[dhms]", job["until"])
    assert jobs["evil_job"]["name"] == HOSTILE_NAME
    assert jobs["database_backup"]["schedule"] == "Daily at 02:00 UTC"
    assert jobs["database_backup"]["trigger"] == "cron"
    assert jobs["cleanup_temp"]["schedule"] == "Every 6 hours"

    # Upcoming: the three soonest active jobs, as APScheduler orders them.
    soonest = sorted((t, i) for i, t in app.next_runs.items() if t is not None)[:3]
    assert [u["job_id"] for u in store["upcoming"]] == [i for _, i in soonest]
    assert store["upcoming"][0]["until"] == jobs[soonest[0][1]]["until"]


async def test_api_status_history_backup_and_heartbeats(app: Running) -> None:
    store = (await app.status())["jobstores"][0]
    assert store["history_available"] is True
    jobs = {job["job_id"]: job for job in store["jobs"]}
    last = jobs["cleanup_temp"]["last_run"]
    assert last["result"] == "failed" and last["consecutive_failures"] == 2
    assert last["duration_seconds"] == pytest.approx(3)
    assert last["finished_at_unix"] == ts(203) and last["last_success_unix"] == ts(0.4)
    assert last["last_error"] == HOSTILE_ERROR
    for key in ("finished_at", "last_success", "last_failure", "running_since"):
        iso_matches(last, key)
    assert jobs["report_gen"]["last_run"]["result"] == "success"
    assert jobs["evil_job"]["last_run"] is None  # never ran

    [failure] = store["failures"]
    assert failure["job_id"] == "cleanup_temp" and failure["consecutive_failures"] == 2
    assert failure["last_error"] == HOSTILE_ERROR and failure["last_failure_unix"] == ts(203)

    backup = store["backup"]
    assert backup["job_id"] == "database_backup" and backup["in_store"] is True
    assert backup["result"] == "success" and backup["duration_seconds"] == pytest.approx(12.5)
    assert backup["finished_at_unix"] == backup["last_success_unix"] == ts(12.5)
    assert backup["last_failure_unix"] is None and backup["files"] is None

    beats = {beat["scheduler"]: beat for beat in store["schedulers"]}
    assert beats["web-1:100"]["running"] is True and beats["web-1:100"]["stale"] is False
    assert beats["web-2:200"]["running"] is False and beats["web-2:200"]["stale"] is True
    assert beats["web-2:200"]["seconds_since"] == pytest.approx(600, abs=30)
    assert beats["web-1:100"]["host"] == "web-1" and beats["web-1:100"]["pid"] == 100

    for name in ("jobs", "history", "heartbeats"):
        source = store["sources"][name]
        assert source["up"] is True and source["errors_total"] == 0 and source["error"] is None
        iso_matches(source, "last_success")


async def test_an_unreachable_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.sqlite'}"
    async for running in start(url, {}):
        status = await running.status()
        [store] = status["jobstores"]
        assert status["healthy"] is False
        assert store["reachable"] is False and store["ever_polled"] is False
        assert store["message"].startswith("Job store unreachable: ")
        assert store["jobs"] == [] and store["tasks"] == {"total": 0, "active": 0, "paused": 0}
        assert store["sources"]["jobs"]["up"] is False
        assert store["sources"]["jobs"]["errors_total"] == 1
        code, _, page = await running.get("/")
        assert code == 200
        assert "Job store unreachable" in page and "has not been read yet" in page


# -- HTML ---------------------------------------------------------------------------------------


async def test_page_headers_and_structure(app: Running) -> None:
    code, headers, text = await app.get("/")
    assert code == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    _, api_headers, _ = await app.get("/api/status")
    assert api_headers["X-Content-Type-Options"] == "nosniff"

    page = Page(text)
    assert text.startswith("<!DOCTYPE html>")
    assert ("html", {"lang": "en"}) in page.tags
    refresh = [a for t, a in page.tags if t == "meta" and a.get("http-equiv") == "refresh"]
    assert refresh and refresh[0]["content"] == "300"  # poll_interval 3600 s, capped at 5 min
    assert "title" in page.names() and "table" in page.names()
    hrefs = {a.get("href") for t, a in page.tags if t == "a"}
    assert "/metrics" in hrefs
    # Self-contained: nothing to load, nothing to run.
    assert not page.names() & {"script", "link", "img", "iframe", "object", "embed"}
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert "prefers-color-scheme" in text
    words = " ".join("".join(page.text).split())
    assert "Scheduler running with 4 tasks" in words
    assert "database_backup: Daily at 02:00 UTC → in" in words  # the seed's upcoming line
    assert 'scope="col"' in text and "<caption>" in text


async def test_page_escapes_what_came_from_the_database(app: Running) -> None:
    _, _, text = await app.get("/")
    assert "<script" not in text.lower() and "<img" not in text.lower()
    assert "<b>'/var" not in text
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt; &amp; Sons" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    # ...and reads back as the original strings.
    words = "".join(Page(text).text)
    assert HOSTILE_NAME in words and HOSTILE_ERROR in words


@dataclass(frozen=True, slots=True)
class WithBackupFiles(StoreSnapshot):
    """A snapshot with the ``backup_files`` field of the backup_dir source (whether or not this
    checkout's StoreSnapshot has it yet)."""

    backup_files: Any = None


@dataclass(frozen=True, slots=True)
class File:
    name: str
    size: int
    mtime: float


def test_build_status_is_a_pure_function_of_snapshots() -> None:
    now = 1_800_000_000.0
    runs = JobRuns("database_backup", {}, (), 0.0, 0, last_run_success=False,
                   last_run_duration=4.0, last_failure=now - 60, last_error="<disk> full",
                   consecutive_failures=3)  # fmt: skip
    base = StoreSnapshot(
        jobstore="main",
        taken_at=now - 5,
        jobs=(JobView("database_backup", now - 3600, True, name="Backup", schedule="Daily"),),
        ever_succeeded=True,
        sources={"jobs": SourceStatus(ok=True, last_success=now - 5)},
        history=(runs,),
    )
    files = [File("a.db", 10, now - 86400), File("b.db", 0, now - 100)]
    options = StatusOptions(poll_interval=2, backup_job_ids={"main": "database_backup"})
    model = build_status([WithBackupFiles(**_fields(base), backup_files=files)], now, options)
    assert model == build_status([WithBackupFiles(**_fields(base), backup_files=files)], now,
                                 options)  # fmt: skip
    [store] = model["jobstores"]
    assert model["refresh_seconds"] == 5  # never faster than 5 s
    assert store["healthy"] is False and store["overdue"] == ["database_backup"]
    assert store["jobs"][0]["until"] == "overdue by 1h"
    backup = store["backup"]
    assert backup["result"] == "failed" and backup["consecutive_failures"] == 3
    assert backup["files"] == {
        "count": 2,
        "newest_file_time": "2027-01-15T07:58:20+00:00",
        "newest_file_time_unix": now - 100,
        "newest_file_size_bytes": 0,
        "total_size_bytes": 10,
    }
    html = render_html(model)
    assert "&lt;disk&gt; full" in html and "Backup files" in html
    # Past due is overdue, never "upcoming" (the check verdict's rule, which the page shares).
    overdue = '<a href="/jobs/main/database_backup"><code>database_backup</code></a>'
    assert f"Overdue: {overdue}" in html and "Upcoming tasks" not in html
    # A summary object instead of a list of files works too; no field at all means no files.
    # (the shape of snapshot.BackupFiles: files, newest_timestamp, newest_size, total_size)
    summary = type("Scan", (), {"files": 7, "newest_timestamp": now - 30, "newest_size": 5,
                                "total_size": 35})()  # fmt: skip
    scanned = build_status([WithBackupFiles(**_fields(base), backup_files=summary)], now, options)
    assert scanned["jobstores"][0]["backup"]["files"] == {
        "count": 7,
        "newest_file_time": "2027-01-15T07:59:30+00:00",
        "newest_file_time_unix": now - 30,
        "newest_file_size_bytes": 5,
        "total_size_bytes": 35,
    }
    assert build_status([base], now, options)["jobstores"][0]["backup"]["files"] is None


def _fields(snapshot: StoreSnapshot) -> dict[str, Any]:
    names = set(StoreSnapshot.__dataclass_fields__) - {"backup_files"}
    return {name: getattr(snapshot, name) for name in names}


# -- a real browser -----------------------------------------------------------------------------


def chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        need_server("Chromium not installed (apt-get install -y chromium); cannot render the page")
    return path


async def browse(url: str, tmp: Path, *args: str) -> bytes:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,1600",
        *args, url,
    ]  # fmt: skip
    # Asynchronously: the server answering Chromium runs on this event loop.
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


def picture(path: Path) -> tuple[tuple[int, int], tuple[int, ...], int, float]:
    """Size, corner (background) colour, distinct colours, share of non-background pixels."""
    image_module = pytest.importorskip("PIL.Image", reason="Pillow (the `test` extra) needed")
    with image_module.open(path) as image:
        assert image.format == "PNG"
        rgb = image.convert("RGB")
        size = rgb.size
        background = rgb.getpixel((2, 2))
        colours = rgb.getcolors(maxcolors=1 << 24) or []
    same = next((count for count, colour in colours if colour == background), 0)
    return size, background, len(colours), 1 - same / (size[0] * size[1])


@pytest.mark.e2e  # a real browser or a real process
async def test_page_renders_in_headless_chromium(app: Running, tmp_path: Path) -> None:
    url = app.url("/")
    dom = (await browse(url, tmp_path, "--dump-dom")).decode()
    for job_id in app.next_runs:
        assert job_id in dom
    for schedule in ("Daily at 02:00 UTC", "Every 6 hours", "Weekly on Monday at 09:00 UTC"):
        assert schedule in dom
    assert "&lt;script&gt;" in dom and "<script" not in dom.lower()

    light, dark = tmp_path / "light.png", tmp_path / "dark.png"
    await browse(url, tmp_path, f"--screenshot={light}")
    await browse(url, tmp_path, f"--screenshot={dark}", "--force-dark-mode")
    for shot in (light, dark):
        size, _, colours, ink = picture(shot)
        assert size == (1280, 1600)
        assert colours > 50, f"{shot.name}: only {colours} colours, a blank page?"
        assert ink > 0.03, f"{shot.name}: only {ink:.1%} of the page differs from its background"
    _, light_bg, _, _ = picture(light)
    _, dark_bg, _, _ = picture(dark)
    assert sum(light_bg) > 600 and sum(dark_bg) < 150  # prefers-color-scheme is honoured


# -- links, filter, pagination, run strips, backups, headline, reload ---------------------------


async def test_filter_pagination_and_run_strips(sqlite_db: Database) -> None:
    many_jobs(sqlite_db.url, 120)
    runs = Runs(sqlite_db.url)
    for n, status in enumerate(["success"] * 22 + ["failed", "missed", "success"]):
        runs.add("job_00007", status, 3000 - n * 60, 1.0)
    runs.close()
    async for app in serve(load_config(db_url=sqlite_db.url, poll_interval=3600)):
        _, _, text = await app.get("/")
        page = Page(text)
        rows = [a["href"] for a in page.find("a") if (a.get("href") or "").startswith("/jobs/")]
        assert len(rows) == 50 and rows[0] == "/jobs/default/job_00000"
        assert "1–50 of 120 jobs (120 in default)" in page.words()
        assert "page 1 of 3" in page.words()
        [following] = page.find("a", rel="next")
        # The next page, as a browser follows the link.
        _, _, text = await app.get(str(following["href"]).split("#")[0])
        second = Page(text)
        hrefs = [a["href"] for a in second.find("a") if (a.get("href") or "").startswith("/jobs/")]
        assert hrefs[0] == "/jobs/default/job_00050" and "page 2 of 3" in second.words()
        # The strip: the newest 20 runs of job_00007, oldest left; other jobs have none.
        [strip] = [a for a in page.find("span") if a.get("class") == "strip"]
        assert strip["aria-label"] == "last 20 runs, newest last: " + ", ".join(
            ["success", "missed", "failed"] + ["success"] * 17
        )
        marks = [c for c in page.classes("i") if c.startswith("r-")]
        assert marks[-3:] == ["r-failed", "r-missed", "r-success"] and len(marks) == 20
        # The filter: id or name, any case; pagination keeps it.
        _, _, text = await app.get("/?q=TENANT+0001")
        found = Page(text)
        ids = [a["href"] for a in found.find("a") if (a.get("href") or "").startswith("/jobs/")]
        assert ids == [f"/jobs/default/job_{n:05d}" for n in range(10, 20)]
        assert "10 jobs matching “TENANT 0001”" in found.words()
        assert found.find("input", name="q", value="TENANT 0001")
        _, _, text = await app.get("/?q=job_&per_page=40&page=3")
        last = Page(text)
        assert "page 3 of 3" in last.words()
        assert [a["href"] for a in last.find("a", rel="prev")] == [
            "/?page=2&q=job_&per_page=40#store-default"
        ]
        # A bad page number is one line, not a stack trace.
        code, _, text = await app.get("/?page=zero")
        assert code == 400 and "page must be a whole number, got 'zero'" in Page(text).words()
        # The JSON keeps every job.
        status = await app.json("/api/status")
        assert len(status["jobstores"][0]["jobs"]) == 120


async def test_headline_is_not_healthy_while_a_source_is_down(
    sqlite_db: Database, tmp_path: Path
) -> None:
    write_jobs(sqlite_db.url)
    Runs(sqlite_db.url).close()  # the kit's tables, as the demo has them
    add_heartbeats(sqlite_db)
    missing = tmp_path / "backups"  # the demo's first minutes: the directory is not there yet
    config = load_config(db_url=sqlite_db.url, poll_interval=3600, backup_dir=missing)
    async for app in serve(config):
        status = await app.json("/api/status")
        assert status["healthy"] is True  # the scheduler itself is fine (as `check` says)
        [down] = status["sources_down"]
        assert down["source"] == "backups" and "does not exist" in down["error"]
        assert status["headline"] == "Schedulers running; not read: backups (default)"
        _, _, text = await app.get("/")
        page = Page(text)
        assert "All schedulers healthy" not in text
        assert "Schedulers running; not read: backups (default)" in page.words()
        # Once the directory is there, the headline says healthy again.
        missing.mkdir()
        await asyncio.to_thread(app.sidecar.pollers[0].poll)
        status = await app.json("/api/status")
        assert status["sources_down"] == [] and status["headline"] == "All schedulers healthy"


async def test_headline_is_not_healthy_while_the_last_backup_failed(sqlite_db: Database) -> None:
    """The scheduler runs fine, but its latest backup failed: the headline must say so rather
    than "All schedulers healthy", and say healthy again once a backup succeeds."""
    write_jobs(sqlite_db.url)
    runs = Runs(sqlite_db.url)
    runs.add("database_backup", "success", 7200, 3.0)
    runs.add("database_backup", "failed", 3600, 1.0, error="disk full")
    add_heartbeats(sqlite_db)
    config = load_config(db_url=sqlite_db.url, poll_interval=3600)
    async for app in serve(config):
        status = await app.json("/api/status")
        assert status["healthy"] is True  # the scheduler itself is fine (as `check` says)
        assert status["backups_failed"] == ["default"]
        assert status["headline"] == "Schedulers running; last backup failed: default"
        _, _, text = await app.get("/")
        assert "All schedulers healthy" not in text
        assert "Schedulers running; last backup failed: default" in Page(text).words()
        runs.add("database_backup", "success", 60, 3.0)
        await asyncio.to_thread(app.sidecar.pollers[0].poll)
        status = await app.json("/api/status")
        assert status["backups_failed"] == [] and status["headline"] == "All schedulers healthy"
    runs.close()


async def test_backups_strip_lists_runs_and_verified_files(
    sqlite_db: Database, tmp_path: Path
) -> None:
    write_jobs(sqlite_db.url)
    directory = tmp_path / "backups"
    first = backup_database(sqlite_db.url, directory)
    runs = Runs(sqlite_db.url)
    runs.add("database_backup", "success", 7200, 3.0)
    runs.add("database_backup", "failed", 3600, 1.0, error="disk full")
    runs.close()
    config = load_config(db_url=sqlite_db.url, poll_interval=3600, backup_dir=directory)
    async for app in serve(config):
        _, _, text = await app.get("/")
        page = Page(text)
        words = page.words()
        assert "Recent backups" in words and "Last 2 runs of database_backup" in words
        assert first.path.name in words and "verified" in words
        assert wording.size(first.path.stat().st_size) in words  # "16.0 KiB", as backup list says
        badges = [c for c in page.classes("span") if c.startswith("badge s-")]
        assert badges[:2] == ["badge s-failed", "badge s-success"]


async def test_a_reload_changes_the_refresh_interval(sqlite_db: Database, tmp_path: Path) -> None:
    write_jobs(sqlite_db.url)
    file = tmp_path / "exporter.yaml"
    file.write_text(f"poll_interval: 3600\ndb_url: '{sqlite_db.url}'\n")
    loader = functools.partial(load_config, file)
    async for app in serve(loader(), loader):

        async def refresh(path: str, app: App = app) -> str | None:
            _, _, text = await app.get(path)
            [meta] = Page(text).find("meta", http_equiv="refresh")
            return meta["content"]

        assert await refresh("/") == "300"
        assert (await app.json("/api/status"))["refresh_seconds"] == 300
        file.write_text(f"poll_interval: 20\ndb_url: '{sqlite_db.url}'\n")
        await app.sidecar.reload()
        assert await refresh("/") == "20"
        assert await refresh("/jobs/default/cleanup_temp") == "20"
        assert (await app.json("/api/status"))["refresh_seconds"] == 20
