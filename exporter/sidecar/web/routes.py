"""HTTP routes of the pages: ``/``, ``/api/status``, ``/jobs/...`` and ``/api/jobs/...``.

Handlers read the latest snapshots and the *current* configuration on every request (a reload
changes the refresh interval, the stores and ``hide_run_errors`` at once), fetch what a page
needs beyond the snapshot through :class:`exporter.sidecar.web.runs.RunReader`, shape it with the
pure model functions and render off the event loop when the page is large.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from exporter import __version__
from exporter.sidecar.config import Config, StoreConfig
from exporter.sidecar.decode import DecodedJob, UndecodableJob, decode_job_state
from exporter.sidecar.health import overdue_jobs
from exporter.sidecar.snapshot import JobView, StoreSnapshot
from exporter.sidecar.web import jobmodel
from exporter.sidecar.web.backups import recent_files
from exporter.sidecar.web.listing import PER_PAGE, paginate
from exporter.sidecar.web.paths import runs_api_path
from exporter.sidecar.web.render import render, when
from exporter.sidecar.web.runs import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    STATS_ROWS,
    Busy,
    JobData,
    PageQueryError,
    RunReader,
)
from exporter.sidecar.web.status import (
    SECURITY_HEADERS,
    THREAD_ABOVE_JOBS,
    StatusOptions,
    build_status,
    render_json,
)

log = logging.getLogger(__name__)

MAX_PER_PAGE = 500
STRIP_RUNS = 20
FAILURES_SHOWN = 50
BACKUP_RUNS = 10
BACKUP_FILES = 10
HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"


class PageError(Exception):
    """Answer with ``status`` and a one-line message (as a page or as JSON)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def register(
    app: web.Application,
    config: Callable[[], Config],
    snapshots: Callable[[], Sequence[StoreSnapshot]],
    clock: Callable[[], float] = time.time,
) -> RunReader:
    """Add the page routes to ``app``; the run reader's engines close with the app."""
    pages = Pages(config, snapshots, clock)
    app.router.add_get("/", pages.status_page)
    app.router.add_get("/api/status", pages.status_api)
    app.router.add_get("/jobs/{jobstore}/{job_id}", pages.job_page)
    app.router.add_get("/api/jobs/{jobstore}/{job_id}", pages.job_api)
    app.router.add_get("/api/jobs/{jobstore}/{job_id}/runs", pages.runs_api)

    async def close(_app: web.Application) -> None:
        await asyncio.to_thread(pages.reader.close)

    app.on_cleanup.append(close)
    return pages.reader


def respond(body: bytes | str, content_type: str, status: int = 200) -> web.Response:
    data = body.encode() if isinstance(body, str) else body
    headers = {**SECURITY_HEADERS, "Content-Type": content_type}
    return web.Response(body=data, status=status, headers=headers)


def _int(query: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> Any:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise PageError(400, f"{name} must be a whole number, got {text[:40]!r}") from None
    if not low <= value <= high:
        raise PageError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


class Pages:
    def __init__(
        self,
        config: Callable[[], Config],
        snapshots: Callable[[], Sequence[StoreSnapshot]],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.snapshots = snapshots
        self.clock = clock
        self.reader = RunReader()

    def options(self) -> StatusOptions:
        return StatusOptions.from_config(self.config())

    def _stores(self) -> dict[str, StoreConfig]:
        stores = {store.name: store for store in self.config().stores}
        self.reader.forget_others(set(stores))
        return stores

    # -- the status page --------------------------------------------------------------------

    async def status_api(self, _request: web.Request) -> web.Response:
        current, now, options = self.snapshots(), self.clock(), self.options()

        def produce() -> bytes:
            return render_json(build_status(current, now, options))

        try:
            return respond(await self._work(produce, _large(current)), JSON)
        except Busy as exc:
            return _json_error(503, str(exc))

    async def status_page(self, request: web.Request) -> web.Response:
        try:
            return await self._status_page(request)
        except PageError as exc:
            return self._error_page(exc, self.options())
        except Busy as exc:
            return self._error_page(PageError(503, str(exc)), self.options())

    async def _status_page(self, request: web.Request) -> web.Response:
        current, now, options = self.snapshots(), self.clock(), self.options()
        stores = self._stores()
        query = " ".join(request.query.get("q", "").split())[:200]
        page = _int(request.query, "page", 1, 1, 1_000_000)
        per_page = _int(request.query, "per_page", PER_PAGE, 1, MAX_PER_PAGE)
        pagers: dict[str, dict[str, Any]] = {}

        def select(snapshot: StoreSnapshot) -> Sequence[JobView]:
            visible, pagers[snapshot.jobstore] = paginate(
                snapshot.jobs, query, page, per_page, snapshot.jobstore
            )
            return visible

        def model() -> dict[str, Any]:
            return build_status(current, now, options, select)

        status = await self._work(model, _large(current))
        strips: dict[str, Mapping[str, Any]] = {}
        backups: dict[str, Any] = {}
        for snapshot, store in zip(current, status["jobstores"], strict=True):
            config = stores.get(snapshot.jobstore)
            if config is None:
                continue
            if snapshot.history is not None and store["jobs"]:
                ids = [job["job_id"] for job in store["jobs"]]
                try:
                    strips[snapshot.jobstore] = await self.reader.latest(config, ids, STRIP_RUNS)
                except PageQueryError as exc:
                    log.debug("status page: no run strips for %s: %s", snapshot.jobstore, exc)
            backups[snapshot.jobstore] = await self._recent_backups(config, snapshot, options, now)
        view = {
            "filter": query,
            "pages": pagers,
            "strips": strips,
            "strip_runs": STRIP_RUNS,
            "backups": backups,
            "failures_shown": FAILURES_SHOWN,
        }

        def html() -> bytes:
            return _page(
                "status.html", options, now, title=status["headline"], model=status, view=view
            )

        return respond(await self._work(html, _large(current)), HTML)

    async def _recent_backups(
        self, store: StoreConfig, snapshot: StoreSnapshot, options: StatusOptions, now: float
    ) -> dict[str, Any] | None:
        job_id = options.backup_job_id(store.name)
        has_runs = any(item.job_id == job_id for item in snapshot.history or ())
        if not has_runs and store.backup_dir is None:
            return None
        runs: list[dict[str, Any]] = []
        files = None
        try:
            if has_runs:
                latest = await self.reader.latest(store, [job_id], BACKUP_RUNS)
                runs = [jobmodel.run_row(run, True) for run in latest.get(job_id, ())]
            if store.backup_dir is not None:
                directory = store.backup_dir
                found = await self.reader.call(
                    store, ("files",), lambda: recent_files(directory, BACKUP_FILES)
                )
                files = [{**item, "age": max(0.0, now - item["mtime"])} for item in found]
        except (PageQueryError, OSError) as exc:
            log.debug("status page: recent backups of %s: %s", store.name, exc)
        if not runs and files is None:
            return None
        return {"job_id": job_id, "runs": runs, "files": files}

    # -- job pages --------------------------------------------------------------------------

    def _find(self, request: web.Request) -> tuple[StoreConfig, StoreSnapshot, JobView]:
        name, job_id = request.match_info["jobstore"], request.match_info["job_id"]
        store = self._stores().get(name)
        snapshot = next((s for s in self.snapshots() if s.jobstore == name), None)
        if store is None or snapshot is None:
            raise PageError(404, f"no job store named {name!r} is configured")
        if not snapshot.ever_succeeded:
            raise PageError(503, f"the job store {name!r} has not been read yet; try again soon")
        job = next((j for j in snapshot.jobs if j.id == job_id), None)
        if job is None and "+" in job_id:  # a link built with Go's urlquery writes " " as "+"
            spaced = job_id.replace("+", " ")
            job = next((j for j in snapshot.jobs if j.id == spaced), None)
        if job is None:
            raise PageError(404, f"no job {job_id!r} in the job store {name!r} at the last poll")
        return store, snapshot, job

    async def _work(self, work: Callable[[], Any], large: bool = True) -> Any:
        """CPU work of a page: in its turn (see ``exporter.sidecar.web.runs``), or inline when
        small."""
        if not large:
            return work()
        timeout = max((store.statement_timeout for store in self.config().stores), default=10.0)
        return await self.reader.turn(work, timeout)

    def _job_model(
        self, store: StoreConfig, snapshot: StoreSnapshot, job: JobView, data: JobData, now: float
    ) -> dict[str, Any]:
        """Card and statistics of one job from what was read (CPU work: runs in a turn)."""
        options = self.options()
        decoded = _decode(data.state) if job.decoded else None
        overdue = job in overdue_jobs(snapshot, options.default_grace)
        truncated = len(data.for_stats) >= STATS_ROWS
        return {
            "job": jobmodel.job_card(store.name, job, decoded, overdue, now),
            "stats": jobmodel.job_stats(data.for_stats, now, truncated),
        }

    async def job_page(self, request: web.Request) -> web.Response:
        options, now = self.options(), self.clock()
        try:
            store, snapshot, job = self._find(request)
        except PageError as exc:
            return self._error_page(exc, options)
        hide = options.hide_run_errors
        running = next((r for r in snapshot.history or () if r.job_id == job.id), None)

        def html(data: JobData) -> bytes:
            model = self._job_model(store, snapshot, job, data, now)
            next_page = None
            if data.recent.next_before is not None:
                query = urlencode({"limit": DEFAULT_LIMIT, "before": data.recent.next_before})
                next_page = f"{runs_api_path(store.name, job.id)}?{query}"
            return _page(
                "job.html",
                options,
                now,
                title=f"{job.id} · job",
                card=model["job"],
                stats=model["stats"],
                runs=[jobmodel.run_row(run, hide) for run in data.recent.runs],
                timeline=jobmodel.timeline(list(reversed(data.recent.runs)), now),
                next_page=next_page,
                hide_errors=hide,
                history_error=data.history_error,
                running=jobmodel.last_run(running) if running and running.running else None,
            )

        try:
            body = await self.reader.job_data(store, job.id, jobmodel.TIMELINE_RUNS, html)
        except PageQueryError as exc:  # Busy, or the job table itself not readable
            return self._error_page(PageError(503, str(exc)), options)
        return respond(body, HTML)

    async def job_api(self, request: web.Request) -> web.Response:
        now = self.clock()

        def model(data: JobData) -> dict[str, Any]:
            if data.history_error is not None:
                raise PageQueryError(data.history_error)
            return self._job_model(store, snapshot, job, data, now)

        try:
            store, snapshot, job = self._find(request)
            result = await self.reader.job_data(store, job.id, jobmodel.TIMELINE_RUNS, model)
        except (PageError, Busy, PageQueryError) as exc:
            return _api_failure(exc)
        return respond(render_json({**result, **when_now(now)}), JSON)

    async def runs_api(self, request: web.Request) -> web.Response:
        try:
            store, _snapshot, job = self._find(request)
            limit = _int(request.query, "limit", DEFAULT_LIMIT, 1, 1_000_000)
            before = _int(request.query, "before", None, 1, 2**63 - 1)
            page = await self.reader.runs(store, job.id, min(limit, MAX_LIMIT), before)
        except (PageError, Busy, PageQueryError) as exc:
            return _api_failure(exc)
        hide = self.options().hide_run_errors
        model = {
            "runs": [jobmodel.run_json(run, hide) for run in page.runs],
            "next": page.next_before,
        }
        return respond(render_json(model), JSON)

    def _error_page(self, exc: PageError, options: StatusOptions) -> web.Response:
        heading = {404: "Not found", 400: "Bad request"}.get(exc.status, "Not available")
        body = _page(
            "missing.html",
            options,
            self.clock(),
            refresh=False,
            title=heading,
            heading=heading,
            message=exc.message,
            css="bad" if exc.status != 503 else "warn",
        )
        response = respond(body, HTML, exc.status)
        if exc.status == 503:
            response.headers["Retry-After"] = "5"
        return response


def when_now(now: float) -> dict[str, Any]:
    return jobmodel.when("generated_at", now)


def _decode(state: bytes | None) -> DecodedJob | None:
    if state is None:
        return None
    try:
        return decode_job_state(state)
    except UndecodableJob:
        return None


def _api_failure(exc: PageError | Busy | PageQueryError) -> web.Response:
    """One failed JSON page read as its answer: the page's own status, 503 busy, 502 unreadable."""
    if isinstance(exc, PageError):
        return _json_error(exc.status, exc.message)
    if isinstance(exc, Busy):
        return _json_error(503, str(exc))
    return _json_error(502, f"history not readable: {exc}")


def _json_error(status: int, message: str) -> web.Response:
    body = json.dumps({"error": message}, ensure_ascii=False) + "\n"
    response = respond(body, JSON, status)
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


def _page(
    template: str, options: StatusOptions, now: float, refresh: bool = True, **context: Any
) -> bytes:
    seconds = options.refresh_seconds if refresh else None
    generated = when({"t": jobmodel.iso(now), "t_unix": now}, "t", now, relative=False)
    return render(
        template, refresh=seconds, now=now, version=__version__, generated=generated, **context
    ).encode()


def _large(current: Sequence[StoreSnapshot]) -> bool:
    """Large stores render in a worker thread, in turn (like ``/metrics``); small ones inline."""
    return sum(len(snapshot.jobs) for snapshot in current) > THREAD_ABOVE_JOBS
