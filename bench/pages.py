"""Job pages under load: page and runs-API latency as the history table grows, and /metrics p99
with and without 5 clients loading job pages.

For each backend and history size: 200 jobs written by a real scheduler (copies of three
templates), N finished runs spread over them (one a second, ending now, 1 in 17 failed), the
kit's `(job_id, id)` index. Then `python -m exporter serve` as a subprocess and, over loopback:

1. job page (`/jobs/default/job_K`) and runs API (`?limit=50`, and `?limit=50&before=N/2`, a
   page from the middle of the table) latency, each request for another job so the 3 s answer
   cache never serves it (the cost of a real query), 0.25 s apart (the pages' rest after a
   turn would otherwise be counted in the next request);
2. `/metrics` latency, one client in a loop, for S seconds; then again while a separate process
   runs 5 clients loading job pages of random jobs back to back. The page loads are bounded by
   the exporter (2 page queries at once, the rest wait or get 503), which is what is measured.

Before those, the status page at 10,000 jobs (bench/stores.py): the server-side time of the
model, page 1 of the job list and the template, the run-strip query, and the body's size.

    python -m bench.pages [--sizes 1e5,1e6] [--seconds 8] [--postgres URL|'']
"""

from __future__ import annotations

import argparse
import http.client
import pickle
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bench.history_poll import scratch_database
from bench.scrape import ROOT, free_port, get
from exporter.shared.tables import history_table

JOBS = 200
CLIENTS = 5
CHUNK = 20_000


def build(url: str, rows: int, jobs: int = JOBS) -> float:
    """Write the store and its history; seconds it took."""
    started = time.perf_counter()
    writer = sa.create_engine(url)
    with writer.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS apscheduler_jobs"))
        conn.execute(sa.text("DROP TABLE IF EXISTS job_execution"))
    store = SQLAlchemyJobStore(engine=writer)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)
    try:
        for minutes in (1, 5, 60):
            scheduler.add_job(
                "bench.sample_jobs:noop",
                IntervalTrigger(minutes=minutes, timezone="UTC"),
                id=f"template_{minutes}",
            )
        templates = store.get_all_jobs()
    finally:
        scheduler.shutdown(wait=False)
    copies = []
    for n in range(jobs):
        template = templates[n % len(templates)]
        state = template.__getstate__()
        state["id"], state["name"] = f"job_{n}", f"Job {n}"
        copies.append(
            {
                "id": state["id"],
                "next_run_time": template.next_run_time.timestamp(),
                "job_state": pickle.dumps(state, pickle.HIGHEST_PROTOCOL),
            }
        )
    table = history_table(sa.MetaData())
    table.metadata.create_all(writer)
    end = datetime.now(UTC).replace(tzinfo=None)
    with writer.begin() as conn:
        conn.execute(store.jobs_t.insert(), copies)
        for start in range(0, rows, CHUNK):
            batch = []
            for i in range(start, min(rows, start + CHUNK)):
                begin = end - timedelta(seconds=rows - i)
                batch.append(
                    {
                        "job_id": f"job_{i % jobs}",
                        "scheduled_run_time": begin,
                        "started_at": begin,
                        "finished_at": begin + timedelta(milliseconds=250),
                        "duration_ms": 250.0,
                        "status": "failed" if i % 17 == 0 else "success",
                        "error_message": "ValueError: bad row" if i % 17 == 0 else None,
                    }
                )
            conn.execute(table.insert(), batch)
    if writer.dialect.name == "postgresql":
        with writer.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE job_execution"))
    writer.dispose()
    return time.perf_counter() - started


class Client:
    """One keep-alive HTTP connection; ``get`` returns (status, milliseconds)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[int, float]:
        started = time.perf_counter()
        self.connection.request("GET", path, headers={"Accept-Encoding": "gzip"})
        response = self.connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.connection.close()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(client: Client, paths: list[str]) -> dict[str, float]:
    """Latency of each path on an otherwise idle exporter: a pause after each request lets the
    previous one's rest (see exporter/sidecar/web/runs.py) pass, as between a person's clicks."""
    times = []
    for path in paths:
        time.sleep(0.25)
        status, ms = client.get(path)
        assert status == 200, (path, status)
        times.append(ms)
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(quantile(times, 0.95), 2)}


def metrics_latency(client: Client, seconds: float) -> dict[str, float]:
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, ms = client.get("/metrics")
        assert status == 200
        times.append(ms)
    return {
        "requests": len(times),
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(quantile(times, 0.99), 2),
    }


def load(port: int, seconds: float, clients: int = CLIENTS, jobs: int = JOBS) -> dict[str, int]:
    """``clients`` threads loading job pages of random jobs for ``seconds`` (run this in its own
    process, so its work never slows the /metrics client being measured)."""
    counts = {"ok": 0, "busy": 0, "other": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run() -> None:
        client = Client(port)
        rng = random.Random()
        while time.monotonic() < deadline:
            status, _ = client.get(f"/jobs/default/job_{rng.randrange(jobs)}")
            key = "ok" if status == 200 else "busy" if status == 503 else "other"
            with lock:
                counts[key] += 1
        client.close()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def ready(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/readyz", timeout=5)[0] == 200
    except OSError:
        return False


def measure(backend: str, url: str, rows: int, seconds: float) -> dict[str, Any]:
    fill = build(url, rows)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--db-url", url,
         "--listen-address", f"127.0.0.1:{port}", "--poll-interval", "5"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ready(port):
            assert time.monotonic() < deadline, "exporter not ready"
            assert process.poll() is None, "exporter exited"
            time.sleep(0.2)
        client = Client(port)
        ids = list(range(JOBS))
        random.Random(1).shuffle(ids)
        client.get("/jobs/default/job_0")  # warm: templates compiled, engine connected
        page = timed(client, [f"/jobs/default/job_{i}" for i in ids[:60]])
        runs = timed(client, [f"/api/jobs/default/job_{i}/runs?limit=50" for i in ids[60:120]])
        deep = timed(
            client,
            [f"/api/jobs/default/job_{i}/runs?limit=50&before={rows // 2}" for i in ids[120:180]],
        )
        quiet = metrics_latency(client, seconds)
        loader = subprocess.Popen(
            [sys.executable, "-m", "bench.pages", "--load", str(port), "--seconds", str(seconds)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(0.5)
        loaded = metrics_latency(client, seconds - 1.0)
        out, _ = loader.communicate(timeout=seconds + 60)
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = {
        "backend": backend,
        "rows": rows,
        "fill_seconds": round(fill, 1),
        "job_page": page,
        "runs_api": runs,
        "runs_api_middle": deep,
        "metrics_quiet": quiet,
        "metrics_loaded": loaded,
        "page_loads": parse_counts(out),
    }
    print_row(result)
    return result


def parse_counts(text: str) -> dict[str, int]:
    ok, busy, other = (int(part) for part in text.split())
    return {"ok": ok, "busy": busy, "other": other}


def print_row(r: dict[str, Any]) -> None:
    loads = r["page_loads"]
    print(
        f"{r['backend']:<10} {r['rows']:>9,} rows  page p50 {r['job_page']['p50_ms']:>6.1f} ms "
        f"p95 {r['job_page']['p95_ms']:>6.1f}  runs p50 {r['runs_api']['p50_ms']:>5.1f} "
        f"(middle {r['runs_api_middle']['p50_ms']:>5.1f})  /metrics p99 "
        f"{r['metrics_quiet']['p99_ms']:>5.1f} ms alone, {r['metrics_loaded']['p99_ms']:>5.1f} ms "
        f"with {CLIENTS} page clients ({loads['ok']} pages, {loads['busy']} busy)",
        flush=True,
    )


def status_page(url: str, jobs: int = 10_000, rounds: int = 15) -> dict[str, Any]:
    """Server-side cost of the status page's first page at ``jobs`` jobs (bench/stores.py):
    the model from the snapshot, one page of 50 jobs with the filter and pager, the template;
    and separately the run-strip query of those 50 jobs. Median of ``rounds``."""
    from bench.stores import build_store
    from exporter.sidecar.config import load_config
    from exporter.sidecar.poller import StorePoller
    from exporter.sidecar.web.listing import paginate
    from exporter.sidecar.web.routes import STRIP_RUNS
    from exporter.sidecar.web.runs import StoreQueries
    from exporter.sidecar.web.status import StatusOptions, build_status, render_html

    build_store(url, jobs)
    store = load_config(db_url=url).stores[0]
    poller = StorePoller(store)
    snapshot = poller.poll()
    poller.close()
    options = StatusOptions()
    pages: dict[str, Any] = {}

    def select(item: Any) -> Any:
        visible, pages[item.jobstore] = paginate(item.jobs, "", 1, 50, item.jobstore)
        return visible

    renders, strips, size = [], [], 0
    queries = StoreQueries(store)
    for _ in range(rounds):
        started = time.perf_counter()
        model = build_status([snapshot], time.time(), options, select)
        view = {"filter": "", "pages": pages, "strips": {}, "strip_runs": STRIP_RUNS,
                "backups": {}, "failures_shown": 50}  # fmt: skip
        body = render_html(model, view).encode()
        renders.append(time.perf_counter() - started)
        size = len(body)
        ids = [job["job_id"] for job in model["jobstores"][0]["jobs"]]
        started = time.perf_counter()
        queries.latest(ids, STRIP_RUNS)
        strips.append(time.perf_counter() - started)
    queries.close()
    result = {
        "jobs": jobs,
        "render_ms": round(statistics.median(renders) * 1000, 1),
        "strip_query_ms": round(statistics.median(strips) * 1000, 1),
        "body_kb": round(size / 1024, 1),
    }
    print(
        f"status page at {jobs:,} jobs: model + page 1 + template {result['render_ms']} ms, "
        f"run strips of 50 jobs {result['strip_query_ms']} ms, {result['body_kb']} KB",
        flush=True,
    )
    return result


def run(sizes: list[int], postgres: str | None, seconds: float) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="jse-pages-") as tmp:
        results.append({"status_page": status_page(f"sqlite:///{tmp}/status.sqlite")})
        for size in sizes:
            results.append(measure("sqlite", f"sqlite:///{tmp}/pages_{size}.sqlite", size, seconds))
    if postgres:
        try:
            url = scratch_database(postgres, "jse_pages")
        except Exception as exc:  # noqa: BLE001
            print(f"postgresql skipped: {str(exc).splitlines()[0]}")
        else:
            try:
                for size in sizes:
                    results.append(measure("postgresql", url, size, seconds))
            finally:
                admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(sa.text("DROP DATABASE IF EXISTS jse_pages WITH (FORCE)"))
                admin.dispose()
    return results


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pages", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="1e5,1e6", help="history rows [1e5,1e6]")
    parser.add_argument("--seconds", type=float, default=8.0, help="each /metrics run [8]")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1/postgres")
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)  # internal: the load process
    args = parser.parse_args(argv)
    if args.load:
        counts = load(args.load, args.seconds)
        print(counts["ok"], counts["busy"], counts["other"])
        return []
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    print(f"job pages: 200 jobs, /metrics alone and with {CLIENTS} clients loading job pages")
    return run(sizes, args.postgres or None, args.seconds)


if __name__ == "__main__":
    main()
