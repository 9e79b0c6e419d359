"""`jobstore-exporter demo`: the seed's scheduler on SQLite, with the exporter beside it.

A real AsyncIOScheduler from the kit's ``create_scheduler`` persists the demo jobs
(``exporter.cli.demo_jobs``, shared with ``deploy/demo_scheduler.py``) in a SQLite file, exactly as
an Aegis app would, recording every run and a heartbeat; the sidecar reads that file read-only
in the same event loop, so a newcomer sees the product working with nothing to install: job
counts, next-run deltas, run durations and backup results all within the first minute. The demo
imports both halves, which the sidecar itself never does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter.cli.demo_jobs import (  # the job functions too: rows of older demos name them here
    DEMO_BACKUP_EVERY,
    add_demo_jobs,
    back_up_at_start,
    backup_setting,
    cleanup_temp,
    report_gen,
    sync_inventory,
)
from exporter.cli.kit_seam import create_scheduler
from exporter.sidecar.config import ConfigError, load_config
from exporter.sidecar.serving.server import serve, split_address

__all__ = ["build_scheduler", "cleanup_temp", "report_gen", "run_demo", "sync_inventory"]

log = logging.getLogger(__name__)

DEMO_DB = "demo.sqlite"


def build_scheduler(directory: Path) -> AsyncIOScheduler:
    """The demo jobs, persisted in ``directory/demo.sqlite`` with history and heartbeats,
    re-registered from code at every start as Aegis apps do.

    The backup is the kit's real one (SQLite online backup, verified, rotated), every
    ``DEMO_BACKUP_EVERY`` seconds and once right at start, so backup metrics show within the
    first minute; its directory exists before the exporter's first poll, so no source of a
    fresh demo ever fails.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "backups").mkdir(exist_ok=True)
    db_path = (directory / DEMO_DB).resolve()
    scheduler = create_scheduler(
        f"sqlite:///{db_path}",
        timezone="UTC",
        backup=backup_setting(directory / "backups", DEMO_BACKUP_EVERY),
    )
    add_demo_jobs(scheduler, directory)
    back_up_at_start(scheduler)
    return scheduler


def port_problem(listen_address: str) -> str | None:
    """Why the exporter could not listen on ``listen_address`` (None if it can), found before
    anything starts, so a taken port is one line and not the last of a dozen."""
    try:
        host, port = split_address(listen_address)
    except ValueError:
        return "not HOST:PORT"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return f"cannot resolve {host}: {exc}"
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


async def run_demo(directory: Path, listen_address: str, poll_interval: float) -> int:
    """Start scheduler and exporter, print where to look, run until interrupted."""
    problem = port_problem(listen_address)
    if problem is not None:
        print(
            f"jobstore-exporter demo: cannot listen on {listen_address}: {problem}; "
            "pass --listen-address 127.0.0.1:PORT",
            file=sys.stderr,
        )
        return 2
    db_url = f"sqlite:///{(directory / DEMO_DB).resolve()}"
    try:
        config = load_config(
            db_url=db_url,
            listen_address=listen_address,
            poll_interval=poll_interval,
            backup_dir=directory / "backups",
        )
    except ConfigError as exc:
        print(f"jobstore-exporter demo: {exc}", file=sys.stderr)
        return 2
    scheduler = build_scheduler(directory)
    scheduler.start()
    ready = asyncio.Event()
    server = asyncio.create_task(serve(config, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        scheduler.shutdown(wait=False)
        try:
            server.result()
        except OSError as exc:
            print(
                f"jobstore-exporter demo: cannot listen on {listen_address}: "
                f"{exc.strerror or exc}; pass --listen-address 127.0.0.1:PORT",
                file=sys.stderr,
            )
        return 2
    base = f"http://{listen_address}"
    print(
        "\njobstore-exporter demo is running (Ctrl-C to stop)\n"
        f"  scheduler database: {db_url}\n"
        f"  status page:        {base}/\n"
        f"  metrics:            {base}/metrics\n"
        f"  backups:            {(directory / 'backups').resolve()} "
        f"(at start, then every {DEMO_BACKUP_EVERY / 60:g} minutes)\n"
        f"  readiness:          {base}/readyz\n"
        f"  health check:       jobstore-exporter check --detailed --db-url {db_url}\n",
        flush=True,
    )
    try:
        await server
    finally:
        scheduler.shutdown(wait=False)
    return 0
