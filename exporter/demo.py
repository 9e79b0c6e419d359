"""`jobstore-exporter demo`: the seed's scheduler on SQLite, with the exporter beside it.

A real AsyncIOScheduler from the kit's ``create_scheduler`` persists the seed's jobs in a SQLite
file, exactly as an Aegis app would, recording every run and a heartbeat; the sidecar reads that
file read-only in the same event loop, so a newcomer sees the product working with nothing to
install. The jobs do small real work inside the demo directory. The demo imports both halves,
which the sidecar itself never does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.config import ConfigError, load_config
from exporter.kit import create_scheduler
from exporter.server import serve

log = logging.getLogger(__name__)

DEMO_DB = "demo.sqlite"


def cleanup_temp(temp_dir: str, max_age_seconds: float = 6 * 3600) -> int:
    """Delete files older than ``max_age_seconds`` from the demo's temp directory."""
    removed = 0
    cutoff = time.time() - max_age_seconds
    for path in Path(temp_dir).glob("*"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink()
            removed += 1
    return removed


def report_gen(report_dir: str) -> str:
    """Write a tiny weekly report file."""
    target = Path(report_dir)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"report_{datetime.now(UTC):%Y%m%d}.txt"
    path.write_text(f"weekly report generated at {datetime.now(UTC).isoformat()}\n")
    return str(path)


def sync_inventory(failure_rate: float = 0.2) -> int:
    """A fast job that sometimes fails, so the demo has failures to show."""
    time.sleep(random.uniform(0.05, 0.4))
    if random.random() < failure_rate:
        raise ConnectionError("inventory service timed out (demo failure)")
    return random.randint(1, 100)


def build_scheduler(directory: Path) -> AsyncIOScheduler:
    """The seed's jobs, persisted in ``directory/demo.sqlite`` with history and heartbeats,
    re-registered from code at every start as Aegis apps do."""
    directory.mkdir(parents=True, exist_ok=True)
    db_path = (directory / DEMO_DB).resolve()
    # The kit's real daily backup (SQLite online backup, verified, rotated), not a demo copy.
    scheduler = create_scheduler(
        f"sqlite:///{db_path}", timezone="UTC", backup=str(directory / "backups")
    )
    scheduler.add_job(
        "exporter.demo:cleanup_temp",
        trigger=IntervalTrigger(hours=6, timezone="UTC"),
        kwargs={"temp_dir": str(directory / "tmp")},
        id="cleanup_temp",
        name="Clean Temporary Files",
        replace_existing=True,
    )
    scheduler.add_job(
        "exporter.demo:report_gen",
        trigger=CronTrigger(day_of_week="mon", hour=9, minute=0, timezone="UTC"),
        kwargs={"report_dir": str(directory / "reports")},
        id="report_gen",
        name="Weekly Report",
        replace_existing=True,
    )
    scheduler.add_job(
        "exporter.demo:sync_inventory",
        trigger=IntervalTrigger(seconds=20, timezone="UTC"),
        id="sync_inventory",
        name="Sync Inventory",
        max_instances=1,
        replace_existing=True,
    )
    return scheduler


async def run_demo(directory: Path, listen_address: str, poll_interval: float) -> int:
    """Start scheduler and exporter, print where to look, run until interrupted."""
    scheduler = build_scheduler(directory)
    db_url = f"sqlite:///{(directory / DEMO_DB).resolve()}"
    try:
        config = load_config(
            db_url=db_url,
            listen_address=listen_address,
            poll_interval=poll_interval,
            backup_dir=directory / "backups",
        )
    except ConfigError as exc:
        print(f"jobstore-exporter demo: {exc}")
        return 2
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
                f"{exc.strerror or exc}; pass --listen-address 127.0.0.1:PORT"
            )
        return 2
    base = f"http://{listen_address}"
    print(
        "\njobstore-exporter demo is running (Ctrl-C to stop)\n"
        f"  scheduler database: {db_url}\n"
        f"  status page:        {base}/\n"
        f"  metrics:            {base}/metrics\n"
        f"  readiness:          {base}/readyz\n"
        f"  health check:       jobstore-exporter check --detailed --db-url {db_url}\n",
        flush=True,
    )
    try:
        await server
    finally:
        scheduler.shutdown(wait=False)
    return 0
