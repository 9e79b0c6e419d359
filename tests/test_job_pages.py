"""Job pages (`/jobs/{jobstore}/{job_id}`) and their JSON, served by the real app over real stores.

Jobs are written by a real APScheduler, runs into a real `job_execution` table the way the kit
and Aegis write them; the expectations come from APScheduler itself (fire times) and from the
rows written (statistics by nearest rank, as `history --stats` computes them).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pages_support import App, Page, Runs, job_path, many_jobs, naive, serve
from stores import SEED_JOBS, write_jobs
from support import Database, free_port, stop, wait_for
from test_status_page import browse, picture

from exporter.sidecar.config import load_config
from exporter.sidecar.web.runs import Busy, RunReader

SYNC = {
    "func": "sample_jobs:noop",
    "trigger": IntervalTrigger(minutes=20, timezone="UTC"),
    "id": "tenant_sync",
    "name": "Sync tenants",
    "coalesce": False,
    "max_instances": 3,
    "misfire_grace_time": 30,
}
MULTILINE = "Traceback (most recent call last):\n  File x\nValueError: <b>boom</b> & 'more'"
HOSTILE_IDS = [
    "quote\"d'id",
    "</script><script>alert(1)</script>",
    "new\nline",
    "slash/and?query#frag",
]


def fill_runs(url: str) -> Runs:
    runs = Runs(url)
    runs.add("tenant_sync", "failed", 10 * 86400, 4.0, error="too old to count")
    runs.add("tenant_sync", "success", 3 * 86400, 10.0)
    runs.add("tenant_sync", "success", 7200, 1.5, late=0.25)
    runs.add("tenant_sync", "success", 3600, 2.5)
    runs.add("tenant_sync", "failed", 1800, 0.5, error=MULTILINE)
    runs.add("tenant_sync", "missed", 900)
    runs.add("tenant_sync", "running", 60)
    return runs


@pytest.fixture
async def app(sqlite_db: Database) -> AsyncIterator[App]:
    write_jobs(sqlite_db.url, [*SEED_JOBS, SYNC])
    fill_runs(sqlite_db.url).close()
    async for running in serve(load_config(db_url=sqlite_db.url, poll_interval=3600)):
        yield running


def fire_times_by_apscheduler(url: str, job_id: str, now: float, count: int = 5) -> list[float]:
    store = SQLAlchemyJobStore(url=url)
    try:
        job = store.lookup_job(job_id)
    finally:
        store.engine.dispose()
    assert job is not None
    moment = datetime.fromtimestamp(now, UTC)
    times, previous = [], None
    for _ in range(count):
        following = job.trigger.get_next_fire_time(previous, previous or moment)
        times.append(following.timestamp())
        previous = following
    return times


async def test_job_api_card_and_stats(app: App, sqlite_db: Database) -> None:
    data = await app.json(job_path("default", "tenant_sync", api=True))
    card, stats = data["job"], data["stats"]
    assert card["job_id"] == "tenant_sync" and card["name"] == "Sync tenants"
    assert card["trigger"] == "interval" and card["schedule"] == "Every 20 minutes"
    assert card["executor"] == "default" and card["state"] == "active" and not card["paused"]
    assert card["misfire_grace_seconds"] == 30
    assert card["coalesce"] is False and card["max_instances"] == 3
    expected = fire_times_by_apscheduler(sqlite_db.url, "tenant_sync", data["generated_at_unix"])
    assert card["next_fire_times_unix"] == pytest.approx(expected, abs=1e-3)
    assert card["next_fire_times"][0] == datetime.fromtimestamp(expected[0], UTC).isoformat(
        timespec="seconds"
    )

    day, week = stats["24h"], stats["7d"]
    assert day["runs"] == {"success": 2, "failed": 1, "missed": 1, "skipped": 0, "running": 1}
    assert day["finished"] == 3 and day["failed"] == 1
    assert day["failure_rate"] == pytest.approx(1 / 3, abs=1e-5)
    assert (day["p50_seconds"], day["p95_seconds"], day["max_seconds"]) == (1.5, 2.5, 2.5)
    assert day["complete"] is True
    assert week["runs"]["success"] == 3 and week["failure_rate"] == pytest.approx(0.25)
    assert (week["p50_seconds"], week["p95_seconds"], week["max_seconds"]) == (1.5, 10.0, 10.0)

    # The seed's backup job: max_instances and coalesce as registered.
    backup = (await app.json(job_path("default", "database_backup", api=True)))["job"]
    assert backup["max_instances"] == 1 and backup["coalesce"] is True
    assert backup["schedule"] == "Daily at 02:00 UTC"


async def test_job_page_shows_card_timeline_and_runs(app: App) -> None:
    code, headers, text = await app.get(job_path("default", "tenant_sync"))
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    page = Page(text)
    words = page.words()
    for expected in ("Sync tenants", "Every 20 minutes", "Max instances 3", "Coalesce no",
                     "Misfire grace 30.00 s", "Last 24h", "Last 7d", "33.3% (1 of 3)"):  # fmt: skip
        assert expected in words, expected
    assert not [t for t, _ in page.tags if t in {"script", "link", "img", "iframe", "object"}]
    # Timeline: one mark per run, coloured by status, the missed run a tick.
    bars = page.classes("rect")
    assert sorted(bars) == sorted(
        ["b-failed", "b-success", "b-success", "b-success", "b-failed", "b-missed", "b-running"]
    )
    # The table: newest first, the running run on top; the multi-line error expandable.
    statuses = [c for c in page.classes("span") if c.startswith("badge s-")]
    assert statuses[:3] == ["badge s-running", "badge s-missed", "badge s-failed"]
    assert "Traceback (most recent call last):" in words
    assert page.find("details") and page.find("summary")
    assert "ValueError: <b>boom</b> & 'more'" in "".join(page.text)
    assert "<b>boom</b>" not in text  # escaped, not markup
    # Running now, from the snapshot.
    assert "Running now 1 run" in words
    # The status page links here.
    _, _, status_page = await app.get("/")
    assert {"href": "/jobs/default/tenant_sync"} in Page(status_page).find("a")


async def test_runs_api_pages_newest_first(app: App, sqlite_db: Database) -> None:
    path = job_path("default", "tenant_sync", api=True) + "/runs"
    first = await app.json(f"{path}?limit=3")
    assert [r["status"] for r in first["runs"]] == ["running", "missed", "failed"]
    assert set(first["runs"][0]) == {"id", "status", "scheduled_run_time", "started_at",
                                     "finished_at", "duration_seconds", "error"}  # fmt: skip
    assert first["runs"][2]["error"] == MULTILINE
    assert first["runs"][1]["started_at"] is None and first["runs"][1]["duration_seconds"] is None
    assert first["next"] == first["runs"][-1]["id"]
    second = await app.json(f"{path}?limit=3&before={first['next']}")
    assert [r["status"] for r in second["runs"]] == ["success", "success", "success"]
    last = await app.json(f"{path}?limit=3&before={second['next']}")
    assert [r["status"] for r in last["runs"]] == ["failed"] and last["next"] is None
    ids = [r["id"] for r in first["runs"] + second["runs"] + last["runs"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 7
    started = datetime.fromisoformat(second["runs"][0]["started_at"])
    assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0
    assert (await app.json(path))["next"] is None  # default limit 50 holds all 7

    # The limit is capped at 500.
    runs = Runs(sqlite_db.url)
    runs.bulk([{"job_id": "report_gen", "status": "success"} for _ in range(620)])
    runs.close()
    capped = await app.json(job_path("default", "report_gen", api=True) + "/runs?limit=100000")
    assert len(capped["runs"]) == 500 and capped["next"] is not None

    # Bad input: one line naming the parameter.
    error = await app.json(f"{path}?limit=ten", status=400)
    assert error == {"error": "limit must be a whole number, got 'ten'"}
    error = await app.json(f"{path}?before=0", status=400)
    assert "before must be between 1 and" in error["error"]


async def test_unknown_job_and_store_are_404(app: App) -> None:
    code, _, text = await app.get(job_path("default", "no_such_job"))
    assert code == 404
    words = Page(text).words()
    assert "no job 'no_such_job' in the job store 'default'" in words and "status page" in words
    code, _, text = await app.get(job_path("elsewhere", "tenant_sync"))
    assert code == 404 and "no job store named 'elsewhere'" in Page(text).words()
    error = await app.json(job_path("default", "no_such_job", api=True), status=404)
    assert error["error"].startswith("no job 'no_such_job'")
    await app.json(job_path("default", "no_such_job", api=True) + "/runs", status=404)


async def test_hostile_ids_and_names_stay_inert(sqlite_db: Database) -> None:
    jobs = [
        {
            "func": "sample_jobs:noop",
            "trigger": CronTrigger(hour=3, timezone="UTC"),
            "id": job_id,
            "name": f'<script>alert("{n}")</script>\n"name" & \'more\'',
        }
        for n, job_id in enumerate(HOSTILE_IDS)
    ]
    write_jobs(sqlite_db.url, jobs)
    runs = Runs(sqlite_db.url)
    for job_id in HOSTILE_IDS:
        runs.add(job_id, "failed", 100, 1.0, error="</pre></details><script>alert(2)</script>")
    runs.close()
    async for app in serve(load_config(db_url=sqlite_db.url, poll_interval=3600)):
        _, _, status_page = await app.get("/")
        pages = [status_page]
        links = {
            a["href"] for a in Page(status_page).find("a") if a.get("href", "").startswith("/jobs/")
        }  # noqa: E501
        assert links == {job_path("default", job_id) for job_id in HOSTILE_IDS}
        for job_id in HOSTILE_IDS:
            code, _, text = await app.get(job_path("default", job_id))
            assert code == 200, job_id
            pages.append(text)
            page = Page(text)
            assert job_id in "".join(page.text)  # shown as text, newline and all
            data = await app.json(job_path("default", job_id, api=True))
            assert (
                data["job"]["job_id"] == job_id
                and data["job"]["name"] == jobs[HOSTILE_IDS.index(job_id)]["name"]
            )
            listed = await app.json(job_path("default", job_id, api=True) + "/runs")
            assert listed["runs"][0]["error"] == "</pre></details><script>alert(2)</script>"
        for text in pages:
            assert "<script" not in text.lower()
            assert not [t for t, _ in Page(text).tags if t in {"script", "img", "iframe"}]
        # The JSON keeps the ids as they are and links each to its page.
        status = await app.json("/api/status")
        pages = {job["job_id"]: job["page"] for job in status["jobstores"][0]["jobs"]}
        assert pages == {job_id: job_path("default", job_id) for job_id in HOSTILE_IDS}


async def test_hide_run_errors_keeps_error_text_off_the_web(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jobs(sqlite_db.url, [*SEED_JOBS, SYNC])
    fill_runs(sqlite_db.url).close()
    monkeypatch.setenv("JOBSTORE_EXPORTER_HIDE_RUN_ERRORS", "true")  # as a container sets it
    config = load_config(db_url=sqlite_db.url, poll_interval=3600)
    async for app in serve(config):
        listed = await app.json(job_path("default", "tenant_sync", api=True) + "/runs")
        assert [r["error"] for r in listed["runs"]] == [None] * 7
        texts = [(await app.get(path))[2] for path in (
            "/", "/api/status", job_path("default", "tenant_sync"),
            job_path("default", "tenant_sync", api=True))]  # fmt: skip
        for text in texts:
            assert "boom" not in text and "Traceback" not in text
        assert "hidden" in Page(texts[2]).words()
        status = json.loads(texts[1])
        assert status["hide_run_errors"] is True
        [sync] = [j for j in status["jobstores"][0]["jobs"] if j["job_id"] == "tenant_sync"]
        assert sync["last_run"]["last_error"] is None
        assert sync["last_run"]["result"] == "failed"  # the result itself stays


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
async def test_job_page_on_server_databases(kind: str, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue("pg_db" if kind == "postgresql" else "mariadb_db")
    write_jobs(db.url, [*SEED_JOBS, SYNC])
    fill_runs(db.url).close()
    async for app in serve(load_config(db_url=db.url, poll_interval=3600)):
        data = await app.json(job_path("default", "tenant_sync", api=True))
        assert data["stats"]["24h"]["runs"]["success"] == 2
        assert data["stats"]["7d"]["max_seconds"] == 10.0
        path = job_path("default", "tenant_sync", api=True) + "/runs?limit=2"
        first = await app.json(path)
        assert [r["status"] for r in first["runs"]] == ["running", "missed"]
        rest = await app.json(f"{path}&before={first['next']}")
        assert rest["runs"][0]["error"] == MULTILINE
        code, _, text = await app.get(job_path("default", "tenant_sync"))
        assert code == 200 and len(Page(text).classes("rect")) == 7
        assert re.search(r"33\.3%", text)


# -- in a real browser --------------------------------------------------------------------------


@pytest.mark.e2e  # a real browser or a real process
async def test_job_page_in_headless_chromium(app: App, tmp_path: Path) -> None:
    """Successes, failures, a missed and a running run: the page draws all of them."""
    url = app.url(job_path("default", "tenant_sync"))
    dom = (await browse(url, tmp_path, "--dump-dom")).decode()
    assert dom.count("<rect") == 7 and "Sync tenants" in dom and "<script" not in dom.lower()
    shots = {}
    for scheme, flags in (("light", ()), ("dark", ("--force-dark-mode",))):
        shot = tmp_path / f"job-{scheme}.png"
        await browse(url, tmp_path, f"--screenshot={shot}", *flags)
        size, background, colours, ink = picture(shot)
        assert size == (1280, 1600)
        assert colours > 50, f"{shot.name}: only {colours} colours, a blank page?"
        assert ink > 0.03, f"{shot.name}: only {ink:.1%} differs from the background"
        shots[scheme] = background
        # The timeline shows every status, none hidden behind another.
        box = timeline_box(shot, TIMELINE_BACKGROUND[scheme])
        for colour in STATUS_COLOURS[scheme]:
            assert has_colour(shot, colour, box), f"{shot.name}: no {colour} in the timeline"
    assert sum(shots["light"]) > 600 and sum(shots["dark"]) < 150


@pytest.mark.e2e  # a real browser or a real process
async def test_status_page_at_10000_jobs(sqlite_db: Database, tmp_path: Path) -> None:
    many_jobs(sqlite_db.url, 10_000)
    runs = Runs(sqlite_db.url)
    runs.bulk(
        [
            {"job_id": f"job_{n:05d}", "status": "failed" if (n + k) % 7 == 0 else "success",
             "started_at": naive(runs.now - 3600 + k * 60), "duration_ms": 1500.0}
            for n in range(60)
            for k in range(25)
        ]
    )  # fmt: skip
    runs.close()
    async for app in serve(load_config(db_url=sqlite_db.url, poll_interval=3600)):
        code, _, text = await app.get("/")
        assert code == 200
        assert len(text.encode()) < 300_000, f"{len(text.encode())} bytes"
        page = Page(text)
        assert "1–50 of 10000 jobs" in page.words() and "page 1 of 200" in page.words()
        assert len([c for c in page.classes("span") if c == "strip"]) == 50
        shot = tmp_path / "status-10000.png"
        await browse(app.url("/"), tmp_path, f"--screenshot={shot}")
        size, _, colours, ink = picture(shot)
        assert size == (1280, 1600) and colours > 50 and ink > 0.03
        assert has_colour(shot, STATUS_COLOURS["light"][0])  # the strips' green


STATUS_COLOURS = {  # success, failed, missed, running: the CSS variables of each scheme
    "light": ((0x1A, 0x7F, 0x37), (0xC6, 0x28, 0x28), (0x9A, 0x67, 0x00), (0x24, 0x57, 0xC5)),
    "dark": ((0x4A, 0xC2, 0x6B), (0xFF, 0x6B, 0x6B), (0xD4, 0xA7, 0x2C), (0x7A, 0xA7, 0xFF)),
}


TIMELINE_BACKGROUND = {"light": (0xEE, 0xF1, 0xF5), "dark": (0x24, 0x2B, 0x36)}

Box = tuple[int, int, int, int]


def timeline_box(path: Path, background: tuple[int, int, int]) -> Box:
    """Where the timeline is: the rows mostly of its background colour (nothing else on the
    page is that wide in that colour)."""
    image_module = pytest.importorskip("PIL.Image", reason="Pillow (the `test` extra) needed")
    with image_module.open(path) as image:
        rgb = image.convert("RGB")
        width, height = rgb.size
        pixels = rgb.load()
        rows = [
            y
            for y in range(height)
            if sum(1 for x in range(0, width, 4) if pixels[x, y] == background) > width / 8
        ]
    assert rows, f"{path.name}: no timeline found"
    return (0, rows[0], width, rows[-1] + 1)


def has_colour(
    path: Path, colour: tuple[int, int, int], box: Box | None = None, slack: int = 12
) -> bool:
    image_module = pytest.importorskip("PIL.Image", reason="Pillow (the `test` extra) needed")
    with image_module.open(path) as image:
        rgb = image.convert("RGB")
        colours = (rgb.crop(box) if box else rgb).getcolors(maxcolors=1 << 24) or []
    return any(
        count >= 20 and all(abs(a - b) <= slack for a, b in zip(rgb, colour, strict=True))
        for count, rgb in colours
    )


async def test_a_link_built_by_an_alert_template_finds_the_job(sqlite_db: Database) -> None:
    """Prometheus' `urlquery` writes a space as `+`; the page still finds the job."""
    spaced = {**SYNC, "id": "nightly report", "name": "Nightly"}
    write_jobs(sqlite_db.url, [spaced, {**SYNC, "id": "a+b", "name": "Plus"}])
    async for app in serve(load_config(db_url=sqlite_db.url, poll_interval=3600)):
        code, _, text = await app.get("/jobs/default/nightly+report")
        assert code == 200 and "Nightly" in Page(text).words()
        code, _, text = await app.get("/jobs/default/a+b")  # a real "+" still wins
        assert code == 200 and "Plus" in Page(text).words()


async def test_page_work_takes_turns_and_a_crowd_is_told_to_retry() -> None:
    """One page's work at a time; a request that cannot get a turn in time gets Busy (503)."""
    reader = RunReader()
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "first"

    first = asyncio.create_task(reader.turn(slow, 10))
    assert await asyncio.to_thread(started.wait, 10)
    with pytest.raises(Busy, match="too many page loads at once"):
        await reader.turn(lambda: "second", 0.2)
    release.set()
    assert await first == "first"
    assert await reader.turn(lambda: "third", 10) == "third"  # after the first one's rest
    reader.close()


@pytest.mark.e2e  # a real browser or a real process
def test_hide_run_errors_flag_of_serve(sqlite_db: Database, tmp_path: Path) -> None:
    """`serve --hide-run-errors` (and `hide_run_errors: true` in the config file), as run."""
    write_jobs(sqlite_db.url, [*SEED_JOBS, SYNC])
    fill_runs(sqlite_db.url).close()
    config = tmp_path / "exporter.yaml"
    config.write_text(f"db_url: '{sqlite_db.url}'\nhide_run_errors: true\n")
    path = job_path("default", "tenant_sync", api=True) + "/runs"
    for args in (["--db-url", sqlite_db.url, "--hide-run-errors"], ["--config", str(config)]):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "serve", *args,
             "--listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            listed = wait_for(lambda port=port: _get_json(f"http://127.0.0.1:{port}{path}"))
            assert len(listed["runs"]) == 7 and {r["error"] for r in listed["runs"]} == {None}
        finally:
            stop(proc)


def _get_json(url: str) -> Any:
    """The runs once the exporter answers with them (not before it is up and has polled)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:  # not listening yet, or 503 before the first poll
        return None


async def test_without_a_history_table_and_before_the_first_read(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """A store without the kit's history table still has job pages (card, and why no runs);
    a store not read yet answers 503 with Retry-After rather than a wrong 404."""
    write_jobs(sqlite_db.url, [*SEED_JOBS, SYNC])
    async for app in serve(load_config(db_url=sqlite_db.url, poll_interval=3600)):
        code, _, text = await app.get(job_path("default", "tenant_sync"))
        words = Page(text).words()
        assert code == 200 and "Every 20 minutes" in words and "Max instances 3" in words
        assert "History not readable: no such table: job_execution" in words
        error = await app.json(job_path("default", "tenant_sync", api=True), status=502)
        assert "no such table: job_execution" in error["error"]
    missing = f"sqlite:///{tmp_path / 'missing.sqlite'}"
    async for app in serve(load_config(db_url=missing, poll_interval=3600)):
        code, headers, text = await app.get(job_path("default", "tenant_sync"))
        assert code == 503 and headers["Retry-After"] == "5"
        assert "the job store 'default' has not been read yet" in Page(text).words()
