"""Rows written by APScheduler 3.10.4 (with pytz), the version Aegis Stack apps pin.

3.10 cannot be imported next to the installed 3.11, so `make aps310` (run by `make test`)
installs it once into ``<repo>/.cache/apscheduler-3.10`` (git-ignored), and it runs in a
subprocess with ``PYTHONPATH`` pointing there. The writer uses 3.10's own ``SQLAlchemyJobStore``
on a SQLite file, exactly as an app would, and prints what 3.10 itself says about each job (fire
times, zones) as JSON so the tests can compare the decoded 3.11 objects with the writer's view.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
APS310_DIR = REPO / ".cache" / "apscheduler-3.10"


def find_aps310() -> Path | None:
    """The cached APScheduler 3.10.4 install, or None when it is not there.

    The test run never fetches it itself (that would need the network mid-test): `make test`
    installs it beforehand with `make aps310`, and CI runs `make test`.
    """
    if (APS310_DIR / "APScheduler-3.10.4.dist-info").is_dir() and (APS310_DIR / "pytz").is_dir():
        return APS310_DIR
    return None


def run_python(code: str, path: list[Path], *args: str) -> Any:
    """Run ``code`` in a fresh interpreter with ``path`` first on ``PYTHONPATH``; return the
    JSON it prints on its last line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in path))
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if result.returncode != 0:
        raise AssertionError(f"writer failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# Runs under APScheduler 3.10.4. Argument: the SQLite file to write.
WRITER_310 = r"""
import json, sys
from datetime import datetime, timedelta

import apscheduler
import pytz
from zoneinfo import ZoneInfo
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

assert apscheduler.__version__ == "3.10.4", apscheduler.__version__


def noop(*args, **kwargs):
    pass


class Worker:
    def __init__(self, name):
        self.name = name

    def run(self, *args, **kwargs):
        pass


berlin = pytz.timezone("Europe/Berlin")
scheduler = BackgroundScheduler(
    jobstores={"default": SQLAlchemyJobStore(url="sqlite:///" + sys.argv[1])},
    timezone="Europe/Berlin",  # a pytz zone on 3.10
)
scheduler.start(paused=True)
# The repeated hour at the end of DST: 02:30 CET, the second 02:30 that night.
repeated = berlin.localize(datetime(2025, 10, 26, 2, 30), is_dst=False)
add = scheduler.add_job
add(noop, "cron", id="cron_default_zone", hour=2, minute=30, day_of_week="mon-fri")
add(noop, CronTrigger(day="last", timezone=pytz.utc), id="cron_pytz_utc")
add(noop, CronTrigger(day="1st mon", hour=9, timezone=pytz.FixedOffset(330)), id="cron_fixed")
add(
    noop,
    CronTrigger(
        month="jan-mar", week="*/2", day_of_week="sat", hour="8-18/2",
        start_date="2025-01-01 00:00:00", end_date="2035-12-31 00:00:00",
        timezone="America/New_York",
    ),
    id="cron_ranges",
)
add(noop, CronTrigger(minute="*/5", jitter=30, timezone="Asia/Tokyo"), id="cron_jitter")
add(noop, CronTrigger(hour=4, timezone=ZoneInfo("Asia/Kolkata")), id="cron_zoneinfo")
add(noop, IntervalTrigger(hours=6, start_date=repeated), id="interval_repeated_hour")
add(noop, DateTrigger(berlin.localize(datetime(2030, 1, 1, 9, 0))), id="date_berlin")
add(
    noop,
    OrTrigger([
        AndTrigger([
            CronTrigger(hour="*/2", timezone=berlin),
            IntervalTrigger(hours=1, start_date="2025-01-01 00:00:00"),
        ]),
        DateTrigger(datetime(2031, 6, 1, 12, 0, tzinfo=pytz.utc)),
    ]),
    id="or_and",
)
add(Worker("reports").run, "interval", minutes=15, id="bound_method",
    args=(1, Worker("arg")), kwargs={"who": Worker("kw"), "n": 2})
add(noop, "interval", hours=1, id="no_grace", misfire_grace_time=None, coalesce=False,
    max_instances=3, name="No grace")
add(noop, "interval", hours=1, id="paused").pause()

# The first fire time at or after each of these instants, as 3.10 computes it.
NOWS = [datetime(2025, 10, 25, 12, 0, tzinfo=pytz.utc) + timedelta(days=d) for d in (0, 1, 40)]
jobs = {}
for job in scheduler.get_jobs():
    trigger = job.trigger
    fires = []
    if not getattr(trigger, "jitter", None):
        for now in NOWS:
            fire = trigger.get_next_fire_time(None, now)
            fires.append(fire.timestamp() if fire else None)
    jobs[job.id] = {
        "trigger": type(trigger).__name__,
        "str": str(trigger),
        "zone": str(getattr(trigger, "timezone", "")),
        "next_run_time": job.next_run_time.timestamp() if job.next_run_time else None,
        "fires": fires,
        "misfire_grace_time": job.misfire_grace_time,
        "coalesce": job.coalesce,
        "max_instances": job.max_instances,
        "name": job.name,
    }
scheduler.shutdown()
nows = [n.timestamp() for n in NOWS]
print(json.dumps({"nows": nows, "jobs": jobs, "repeated": repeated.timestamp()}))
"""

# Runs under the installed APScheduler 3.11 with only pytz added to the path: a 3.11 app that
# passes pytz-aware datetimes of its own. Argument: the SQLite file to write.
WRITER_311_PYTZ = r"""
import json, sys
from datetime import datetime

import apscheduler
import pytz
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

assert apscheduler.__version__.startswith("3.11"), apscheduler.__version__
scheduler = BackgroundScheduler(
    jobstores={"default": SQLAlchemyJobStore(url="sqlite:///" + sys.argv[1])}, timezone="UTC"
)
scheduler.start(paused=True)
vienna = pytz.timezone("Europe/Vienna")
run_date = vienna.localize(datetime(2030, 10, 27, 2, 30), is_dst=True)  # first 02:30
start = pytz.FixedOffset(-180).localize(datetime(2030, 1, 1, 0, 0))
scheduler.add_job(print, DateTrigger(run_date), id="date_pytz")
# An explicit zone: 3.11.3's astimezone() fails on a pytz FixedOffset (no ``_offset``).
interval = IntervalTrigger(hours=2, start_date=start, timezone="UTC")
scheduler.add_job(print, interval, id="interval_pytz_fixed")
jobs = {j.id: {"next_run_time": j.next_run_time.timestamp()} for j in scheduler.get_jobs()}
scheduler.shutdown()
print(json.dumps({"jobs": jobs, "run_date": run_date.timestamp(), "start": start.timestamp()}))
"""
