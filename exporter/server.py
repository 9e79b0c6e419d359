"""The aiohttp sidecar: background pollers plus the HTTP endpoints that read their snapshots.

Request handlers never touch the database. ``/metrics`` renders the latest snapshots in a worker
thread (a 10k-job page must not stall ``/healthz``), negotiates OpenMetrics from ``Accept`` the way
Prometheus asks for it, and gzips when the client accepts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from exporter.config import Config
from exporter.metrics import SnapshotCollector, build_registry
from exporter.poller import StorePoller
from exporter.render import BodyCache
from exporter.snapshot import StoreSnapshot
from exporter.status import StatusOptions, add_routes
from exporter.web_config import WebConfig

log = logging.getLogger(__name__)

POLLERS: web.AppKey[Sequence[StorePoller]] = web.AppKey("pollers")


def create_app(
    config: Config, pollers: Sequence[StorePoller], web_config: WebConfig | None = None
) -> web.Application:
    """Wire pollers, collector and routes; pollers start and stop with the app.

    ``web_config`` adds basic auth (every path but ``/healthz``) and response headers.
    """
    settings = config.settings

    def snapshots() -> list[StoreSnapshot]:
        return [poller.snapshot for poller in pollers]

    collector = SnapshotCollector(
        snapshots,
        default_grace=settings.overdue_grace,
        heartbeat_timeout=settings.heartbeat_timeout,
        backup_job_ids={store.name: store.backup_job_id for store in config.stores},
    )
    registry = build_registry(collector)

    bodies = BodyCache(registry, lambda: tuple(p.snapshot.taken_at for p in pollers))

    async def metrics(request: web.Request) -> web.Response:
        body = await bodies.get(request.headers.get("Accept", ""))
        headers = {"Content-Type": body.content_type, "Vary": "Accept, Accept-Encoding"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=body.gzipped, headers=headers)
        return web.Response(body=body.plain, headers=headers)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        waiting = [p.store.name for p in pollers if not p.snapshot.ever_succeeded]
        if waiting:
            return web.Response(
                status=503, text=f"not ready: no successful poll yet of {', '.join(waiting)}\n"
            )
        return web.Response(text="ready\n")

    async def poll_forever(app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(poller.run(settings.poll_interval, settings.max_backoff))
            for poller in pollers
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for poller in pollers:
            poller.close()

    app = web.Application()
    app[POLLERS] = pollers
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_routes(app, snapshots, StatusOptions.from_config(config))  # GET / and /api/status
    app.cleanup_ctx.append(poll_forever)
    if web_config is not None:
        web_config.install(app)
    return app


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve(
    config: Config, *, ready: asyncio.Event | None = None, web_config: WebConfig | None = None
) -> None:
    """Run the sidecar until cancelled; over TLS when ``web_config`` configures it."""
    pollers = [
        StorePoller(store, heartbeat_forget_after=config.settings.heartbeat_forget_after)
        for store in config.stores
    ]
    app = create_app(config, pollers, web_config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = split_address(config.settings.listen_address)
    ssl_context = web_config.ssl_context() if web_config is not None else None
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
        for store in config.stores:
            log.info("jobstore %s: reading %s", store.name, store.display_url)
        scheme = "https" if ssl_context is not None else "http"
        log.info("serving metrics on %s://%s:%d/metrics", scheme, host, port)
        if web_config is not None:
            log.info("web config %s: %s", web_config.path, web_config.describe())
            if web_config.users and ssl_context is None:
                log.warning("basic auth without TLS: passwords cross the network in clear text")
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
