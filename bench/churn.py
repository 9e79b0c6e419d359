"""Churn soak: a store that keeps changing, polled fast and scraped steadily, memory sampled.

The static soak (``bench.soak``) scrapes an unchanging store, so each poll's snapshot renders to
the same body. Real stores change all the time: this one builds a realistic SQLite store of
JOBS jobs (WAL mode, as the kit sets it), runs ``jobstore-exporter serve`` polling every
POLL seconds, and meanwhile

* writes HISTORY finished runs per second into ``job_execution`` (success and failed, with
  durations), as the kit's recorder would;
* moves UPDATES jobs' ``next_run_time`` per second, as a scheduler does when it fires them;
* scrapes ``/metrics`` SCRAPES times per second (Prometheus' headers: OpenMetrics, gzip),
  spread over a few keep-alive connections.

Every job gets one finished run before the exporter starts, so the set of series is complete
from the first poll: what changes is values, not how many series there are (otherwise memory
rises legitimately for the first quarter of an hour, while 10 rows/s reach all 2,000 jobs).

The exporter's resident memory is read every second; each SAMPLE-second row reports the lowest
(the floor: what stays between renders) and the highest (the floor plus the buffers of a render
in flight) of those readings. It passes when no scrape failed and the floor after warm-up (the
first tenth of the run) did not grow: the median floor of the last tenth of the rows within 5 %
or 5 MiB of the median floor of the first tenth after warm-up. The peaks are reported beside it.

    python -m bench.churn                    # 30 minutes: 2,000 jobs, poll 0.5 s, 20 scrapes/s
    python -m bench.churn --minutes 5        # a short look
    python -m bench.soak --churn ...         # the same, beside the static soak

Prints a table and writes bench/results/churn.json. Not part of the test suite (too long).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.soak import HEADERS, RESULTS, _wait_ready, free_port, rss_mib, verdict
from bench.stores import build_store
from exporter.shared.tables import history_table


class Paced(threading.Thread):
    """Calls ``step`` ``rate`` times a second (on average) until stopped; counts failures."""

    def __init__(self, rate: float, step: Any, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.rate, self.step, self.stop = rate, step, stop
        self.done = 0
        self.errors: list[str] = []

    def run(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                self.step()
                self.done += 1
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.errors.append(f"{type(exc).__name__}: {exc}")
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind: do not burst to catch up


class Churn:
    """The writers: history rows and next-run updates, each on its own connection."""

    def __init__(self, url: str, stop: threading.Event, history: float, updates: float) -> None:
        self.engine = sa.create_engine(url)
        sa.event.listen(self.engine, "connect", _wal)
        with self.engine.begin() as conn:
            self.ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM apscheduler_jobs"))]
        self.table = history_table(sa.MetaData())
        self.random = random.Random(17)
        self._pending: list[dict[str, Any]] = []
        self.threads = [
            Paced(history, self.history_row, stop),
            Paced(updates, self.next_run_update, stop),
        ]

    def seed(self) -> None:
        """One finished run for every job, in one transaction."""
        for job_id in self.ids:
            self.history_row(job_id, commit=False)
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), self._pending)
        self._pending.clear()

    def history_row(self, job_id: str | None = None, *, commit: bool = True) -> None:
        job_id = job_id if job_id is not None else self.random.choice(self.ids)
        end = datetime.now(UTC).replace(tzinfo=None)
        duration = self.random.uniform(0.005, 30.0)
        failed = self.random.random() < 0.1
        row = {
            "job_id": job_id,
            "job_name": job_id,
            "scheduled_run_time": end - timedelta(seconds=duration + 0.01),
            "started_at": end - timedelta(seconds=duration),
            "finished_at": end,
            "duration_ms": duration * 1000,
            "status": "failed" if failed else "success",
            "error_message": "ValueError: churn" if failed else None,
        }
        if not commit:
            self._pending.append(row)
            return
        with self.engine.begin() as conn:
            conn.execute(self.table.insert().values(**row))

    def next_run_update(self) -> None:
        job_id = self.random.choice(self.ids)
        when = time.time() + self.random.uniform(1, 86400)
        with self.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE apscheduler_jobs SET next_run_time = :t WHERE id = :id"),
                {"t": when, "id": job_id},
            )


def _wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def scrape_once(port: int) -> Any:
    local = threading.local()

    def step() -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(
                "127.0.0.1", port, timeout=30
            )
        try:
            connection.request("GET", "/metrics", headers=HEADERS)
            response = connection.getresponse()
            body = response.read()
        except Exception:
            connection.close()
            local.connection = None
            raise
        if response.status != 200 or not body:
            raise RuntimeError(f"status {response.status}, {len(body)} bytes")

    return step


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/churn.sqlite"
        print(f"building a {args.jobs:,}-job store ...", flush=True)
        build_store(url, args.jobs)
        stop = threading.Event()
        churn = Churn(url, stop, args.history, args.updates)
        churn.seed()
        port = free_port()
        exporter = subprocess.Popen(
            [sys.executable, "-m", "exporter", "serve", "--db-url", url,
             "--listen-address", f"127.0.0.1:{port}", "--poll-interval", str(args.poll),
             "--max-jobs", str(max(args.jobs, 20_000)), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            _wait_ready(port)
            # A few connections, as a few Prometheus servers and dashboards would be.
            scrapers = [Paced(args.scrapes / 4, scrape_once(port), stop) for _ in range(4)]
            threads = [*churn.threads, *scrapers]
            for thread in threads:
                thread.start()
            samples = []
            started = time.monotonic()
            end = started + args.minutes * 60
            print(
                f"{'elapsed':>8} {'rss MiB':>8} {'peak':>6} {'scrapes/s':>9} {'rows/s':>7} "
                f"{'moves/s':>7} {'errors':>7}",
                flush=True,
            )
            last = (0, 0, 0, started)
            while time.monotonic() < end:
                window_end = min(end, time.monotonic() + args.sample)
                readings = []
                while time.monotonic() < window_end:
                    readings.append(rss_mib(exporter.pid))
                    time.sleep(min(1.0, max(0.0, window_end - time.monotonic())))
                now = time.monotonic()
                done = (
                    sum(s.done for s in scrapers),
                    churn.threads[0].done,
                    churn.threads[1].done,
                )
                span = now - last[3]
                row = {
                    "elapsed_s": round(now - started, 1),
                    "rss_mib": round(min(readings), 1),
                    "rss_peak_mib": round(max(readings), 1),
                    "scrapes_per_s": round((done[0] - last[0]) / span, 1),
                    "history_rows_per_s": round((done[1] - last[1]) / span, 1),
                    "next_run_updates_per_s": round((done[2] - last[2]) / span, 1),
                    "errors": sum(len(t.errors) for t in threads),
                }
                last = (*done, now)
                samples.append(row)
                print(
                    f"{row['elapsed_s']:>8} {row['rss_mib']:>8} {row['rss_peak_mib']:>6} "
                    f"{row['scrapes_per_s']:>9} "
                    f"{row['history_rows_per_s']:>7} {row['next_run_updates_per_s']:>7} "
                    f"{row['errors']:>7}",
                    flush=True,
                )
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            churn.engine.dispose()
        finally:
            stop.set()
            exporter.terminate()
            exporter.wait(timeout=15)
    errors = [e for t in threads for e in t.errors]
    report = verdict(
        samples, sum(s.done for s in scrapers), errors, args.minutes, len(scrapers), args.jobs
    )
    warm = samples[max(1, len(samples) // 10) :] or samples
    tenth = max(1, len(warm) // 10)
    report.update(
        benchmark="churn",
        rss_peak_mib_after_warmup=max(s["rss_peak_mib"] for s in warm[:tenth]),
        rss_peak_mib_at_end=max(s["rss_peak_mib"] for s in warm[-tenth:]),
        allocator=os.environ.get("PYTHONMALLOC", "pymalloc (Python's default)"),
        poll_interval_s=args.poll,
        target_scrapes_per_s=args.scrapes,
        target_history_rows_per_s=args.history,
        target_next_run_updates_per_s=args.updates,
        history_rows=churn.threads[0].done,
        next_run_updates=churn.threads[1].done,
    )
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--poll", type=float, default=0.5, help="the exporter's poll interval")
    parser.add_argument("--scrapes", type=float, default=20.0, help="scrapes per second")
    parser.add_argument("--history", type=float, default=10.0, help="history rows per second")
    parser.add_argument("--updates", type=float, default=20.0, help="next-run updates per second")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=RESULTS / "churn.json")
    args = parser.parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
