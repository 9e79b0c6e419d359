"""The aiohttp sidecar: background pollers plus the HTTP endpoints that read their snapshots.

Request handlers never touch the database. ``/metrics`` serves bodies rendered once per poll
(see ``render.py``), negotiates OpenMetrics from ``Accept`` the way Prometheus asks for it, and
gzips when the client accepts it. :class:`Sidecar` holds what a configuration reload swaps
(SIGHUP, or ``POST /-/reload`` when ``enable_lifecycle`` is set): a bad new configuration is
refused and the running one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from exporter.sidecar import memory
from exporter.sidecar.config import Config, ConfigError
from exporter.sidecar.logs import add_secrets
from exporter.sidecar.metrics.collector import SnapshotCollector, clock_registry
from exporter.sidecar.metrics.deltas import DeltaLines
from exporter.sidecar.metrics.render import BodyCache, RenderError
from exporter.sidecar.metrics.store import MetricStore
from exporter.sidecar.poller import StorePoller, make_pollers
from exporter.sidecar.serving.listener import Connections, GuardedSite, Limits
from exporter.sidecar.snapshot import StoreSnapshot
from exporter.sidecar.web.routes import register as register_pages

if TYPE_CHECKING:  # imported by `serve` only with --web-config-file (PyYAML, bcrypt: 1.5 MB)
    from exporter.sidecar.serving.web_config import WebConfig

log = logging.getLogger(__name__)

Loader = Callable[[], Config]


class Sidecar:
    """The running configuration, its pollers and the renderers built from them."""

    def __init__(
        self,
        config: Config,
        pollers: Sequence[StorePoller] | None = None,
        loader: Loader | None = None,
    ) -> None:
        self.config = config
        self.loader = loader
        self.pollers = list(pollers) if pollers is not None else make_pollers(config)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._reload_lock = asyncio.Lock()
        # Set by ``serve``: after each poll, what it left behind is frozen out of the GC's walks.
        self.heap: memory.HeapFreezer | None = None
        self._build_renderers()

    def snapshots(self) -> list[StoreSnapshot]:
        return [poller.snapshot for poller in self.pollers]

    def _build_renderers(self) -> None:
        settings = self.config.settings

        clock = SnapshotCollector(
            self.snapshots,
            default_grace=settings.overdue_grace,
            heartbeat_timeout=settings.heartbeat_timeout,
            backup_job_ids={store.name: store.backup_job_id for store in self.config.stores},
            part="clock",
        )
        pollers = self.pollers
        # The static part: each job's lines are encoded again only when the job changed.
        static = MetricStore(self.snapshots, clock.settings)
        self.bodies = BodyCache(
            static.render_gzipped,
            clock_registry(clock),
            lambda: tuple(p.snapshot.taken_at for p in pollers),
            deltas=DeltaLines(lambda: [p.snapshot for p in pollers]),
        )

    def start(self) -> None:
        for poller in self.pollers:
            if id(poller) not in self._tasks:
                self._start_polling(poller)

    def _start_polling(self, poller: StorePoller) -> None:
        settings = self.config.settings
        # Each poll starts rendering its body, so scrapes find it ready.
        run = poller.run(
            settings.poll_interval,
            settings.max_backoff,
            after_poll=self._after_poll,
        )
        task = asyncio.create_task(run)
        self._tasks[id(poller)] = task
        task.add_done_callback(lambda done: self._restart_if_dead(poller, done))

    def _after_poll(self) -> None:
        if self.heap is not None:
            self.heap.after_poll()
        self.bodies.refresh_soon()

    def _restart_if_dead(self, poller: StorePoller, task: asyncio.Task[None]) -> None:
        """A poll loop only ends when stopped; one that ended otherwise is counted and started
        again, so a store is never silently left unpolled with its last snapshot frozen."""
        if task.cancelled() or self._tasks.get(id(poller)) is not task:
            return
        log.error(
            "jobstore %s: poll loop ended unexpectedly; restarting it",
            poller.store.name,
            exc_info=task.exception(),
        )
        poller.note_restart()
        self._start_polling(poller)

    async def stop(self, pollers: Sequence[StorePoller] | None = None) -> None:
        for poller in list(self.pollers if pollers is None else pollers):
            task = self._tasks.pop(id(poller), None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(poller.close)

    async def reload(self) -> str:
        """Load the configuration again and apply it; ConfigError leaves everything as it was."""
        if self.loader is None:
            raise ConfigError("reload: this sidecar was started without a configuration to reload")
        async with self._reload_lock:
            new = await asyncio.to_thread(self.loader)
            return await self.apply(new)

    async def apply(self, new: Config) -> str:
        old = self.config
        add_secrets(new.secrets)
        same_selection = _selection(old) == _selection(new)
        reusable = {p.store: p for p in self.pollers} if same_selection else {}
        fresh = make_pollers(new)
        pollers = [reusable.pop(p.store) if p.store in reusable else p for p in fresh]
        for unused in fresh:
            if unused not in pollers:
                unused.close()
        removed = [p for p in self.pollers if p not in pollers]
        kept = len(self.pollers) - len(removed)
        await self.stop(removed)
        for poller in pollers:
            poller.interval = new.settings.poll_interval
            poller.max_backoff = new.settings.max_backoff
        self.config, self.pollers = new, pollers
        self._build_renderers()
        self.start()
        for setting in RESTART_SETTINGS:
            if getattr(old.settings, setting) != getattr(new.settings, setting):
                log.warning("reload: %s changed; it takes effect at the next restart", setting)
        summary = (
            f"{len(new.stores)} job store(s), {kept} kept with their state, "
            f"{len(pollers) - kept} new, {len(removed)} stopped"
        )
        log.info("configuration reloaded: %s", summary)
        return summary


#: Settings read once when the port opens: a reload reports a change but cannot apply it.
RESTART_SETTINGS = (
    "listen_address",
    "web_config_file",
    "enable_lifecycle",
    "web_header_timeout",
    "web_idle_timeout",
    "web_max_connections",
)


def _selection(config: Config) -> tuple[object, ...]:
    settings = config.settings
    return (
        tuple(settings.include_jobs),
        tuple(settings.exclude_jobs),
        settings.max_jobs,
        settings.heartbeat_forget_after,
    )


def create_app(
    config: Config | Sidecar,
    pollers: Sequence[StorePoller] | None = None,
    web_config: WebConfig | None = None,
) -> web.Application:
    """Wire the sidecar's pollers, renderers and routes; pollers start and stop with the app.

    ``web_config`` adds basic auth (every path but ``/healthz``) and response headers.
    """
    sidecar = config if isinstance(config, Sidecar) else Sidecar(config, pollers)

    async def metrics(request: web.Request) -> web.StreamResponse:
        try:
            body = await sidecar.bodies.get(request.headers.get("Accept", ""))
        except RenderError as exc:  # logged and counted where it happened
            return web.Response(status=500, text=f"{exc}\n")
        headers = {"Content-Type": body.content_type, "Vary": "Accept, Accept-Encoding"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return await send_body(request, body.gzipped, headers)
        return await send_body(request, await body.plain_off_loop(), headers)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        waiting = [p.store.name for p in sidecar.pollers if not p.snapshot.ever_succeeded]
        if waiting:
            return web.Response(
                status=503, text=f"not ready: no successful poll yet of {', '.join(waiting)}\n"
            )
        failing = sidecar.bodies.failing()
        if failing is not None:
            return web.Response(status=503, text=f"not ready: {failing}\n")
        return web.Response(text="ready\n")

    async def reload(_request: web.Request) -> web.Response:
        try:
            summary = await sidecar.reload()
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return web.Response(status=400, text=f"reload rejected: {exc}\n")
        return web.Response(text=f"reloaded: {summary}\n")

    async def poll_forever(_app: web.Application) -> AsyncIterator[None]:
        sidecar.start()
        yield
        await sidecar.stop()

    app = web.Application()
    app[SIDECAR] = sidecar
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if sidecar.config.settings.enable_lifecycle:
        app.router.add_post("/-/reload", reload)
    register_pages(app, lambda: sidecar.config, sidecar.snapshots)
    app.cleanup_ctx.append(poll_forever)
    if web_config is not None:
        web_config.install(app)
    return app


SIDECAR: web.AppKey[Sidecar] = web.AppKey("sidecar")


class BodyResponse(web.Response):
    """A ``/metrics`` response whose headers and body leave in two writes, not one.

    On Python before 3.12.9, aiohttp joins a response's headers and body into one new buffer
    per response (``transport.writelines`` is unsafe there). The body is a cached body of
    hundreds of KB (329 KiB gzipped at 10k jobs, 5.9 MB plain), so that join copied it once per
    scrape, and above ``memory.MMAP_THRESHOLD`` each copy is a fresh mapping: page faults, then
    ``munmap``. It was the largest item of a scrape's profile. Writing the headers first (what
    aiohttp's ``StreamResponse`` does) hands the cached bytes to the socket as they are.
    """

    _send_headers_immediately = True


WRITE_CHUNK = 1024 * 1024
"""Bodies larger than this go to the socket in slices of this size (see ``send_body``).

A slice that the socket does not take at once waits for the transport to drain: more turns of
the event loop and more system calls per scrape. At 128 KiB, the gzipped body at 10k jobs (about
400 KB) left in four slices, and the scrapes per second of a cached body were a quarter lower
than in one write; at 1 MiB it leaves in one, and what the transport may copy stays under 1 MiB
(the plain body at 10k jobs, 6 MB, still goes in slices)."""


async def send_body(
    request: web.Request, body: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Send a cached body without copying it whole, however large it is.

    asyncio's socket transport (Python 3.11) copies whatever the socket does not take at once:
    ``data[n:]`` and then into its write buffer, two copies of nearly the whole body per scrape
    (5.9 MB for the plain body at 10k jobs), each a fresh mapping above ``memory.MMAP_THRESHOLD``.
    Slices of a ``memoryview`` cost no copy to cut, and written one at a time, waiting while
    the transport's buffer is full, what the transport copies stays under one slice.
    """
    if len(body) <= WRITE_CHUNK or request.method == "HEAD":
        return BodyResponse(body=body, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    view = memoryview(body)
    with contextlib.suppress(ConnectionError):  # the scraper went away mid-body: nothing to do
        for start in range(0, len(body), WRITE_CHUNK):
            await response.write(view[start : start + WRITE_CHUNK])
        await response.write_eof()
    return response


SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another waits for it (see ``serve``)."""


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def make_runner(
    sidecar: Sidecar, web_config: WebConfig | None = None
) -> tuple[web.AppRunner, Connections]:
    """The app of ``sidecar`` behind the connection limits; start a :class:`GuardedSite` on it."""
    settings = sidecar.config.settings
    app = create_app(sidecar, web_config=web_config)
    tls = web_config.renewing_context() if web_config is not None else None
    limits = Limits(
        header_timeout=settings.web_header_timeout,
        idle_timeout=settings.web_idle_timeout,
        max_connections=settings.web_max_connections,
    )
    connections = Connections(limits, tls)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.idle_timeout)
    return runner, connections


async def serve(
    config: Config,
    *,
    ready: asyncio.Event | None = None,
    web_config: WebConfig | None = None,
    loader: Loader | None = None,
) -> None:
    """Run the sidecar until cancelled; over TLS when ``web_config`` configures it.

    With a ``loader``, SIGHUP (and ``POST /-/reload`` with ``enable_lifecycle``) re-read the
    configuration.
    """
    memory.tune_allocator()  # before the first poll and render allocate their buffers
    # Polls and renders run on threads and hold the GIL in stretches; a thread that wants it is
    # handed it after at most this long. Python's default (5 ms) let a scrape wait that long at
    # each step of its handling while a poll ran.
    sys.setswitchinterval(SWITCH_INTERVAL)
    sidecar = Sidecar(config, loader=loader)
    sidecar.heap = memory.HeapFreezer()
    runner, connections = make_runner(sidecar, web_config)
    tls = connections.tls
    await runner.setup()
    host, port = split_address(config.settings.listen_address)
    site = GuardedSite(runner, host, port, connections)
    loop = asyncio.get_running_loop()
    # Handlers first: a signal that arrives as soon as the port answers must not find the
    # default action (SIGTERM would kill the process without cleanup, SIGHUP would end it).
    # SIGTERM (docker stop, the kubelet) and SIGINT (Ctrl-C) stop alike: logged, clean, exit 0.
    stop = asyncio.Event()
    stopped_by: list[str] = []

    def stop_on(signum: signal.Signals) -> None:
        stopped_by.append(signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_on, signum)
    if loader is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload_in_background(sidecar))
    try:
        await site.start()
        for store in config.stores:
            log.info("jobstore %s: reading %s", store.name, store.display_url)
            if store.driver_note is not None:
                log.info("jobstore %s: %s", store.name, store.driver_note)
        scheme = "https" if tls is not None else "http"
        log.info("serving metrics on %s://%s:%d/metrics", scheme, host, port)
        if web_config is not None:
            log.info("web config %s: %s", web_config.path, web_config.describe())
            if web_config.users and tls is None:
                log.warning("basic auth without TLS: passwords cross the network in clear text")
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping on %s", stopped_by[0])
    finally:
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await runner.cleanup()
        sidecar.heap.close()


_background: set[asyncio.Task[None]] = set()


def _reload_in_background(sidecar: Sidecar) -> None:
    async def reload() -> None:
        try:
            await sidecar.reload()
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)

    task = asyncio.create_task(reload())
    _background.add(task)  # keep a reference until it is done
    task.add_done_callback(_background.discard)
