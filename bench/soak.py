"""Soak: parallel scrapers against a 10k-job store for a long time, memory sampled.

Builds a realistic SQLite store (bench.stores), runs `jobstore-exporter serve` as a subprocess,
and lets SCRAPERS threads scrape /metrics back to back with the headers Prometheus sends, on
loopback, until the time is up. Every SAMPLE seconds it records the exporter's resident memory
and the requests and errors so far. It passes when no request failed and memory after warm-up
did not grow (last tenth of the samples vs. the first tenth after warm-up, within 5 % or 5 MiB).

    python -m bench.soak                     # 30 minutes, 10 scrapers, 10k jobs
    python -m bench.soak --minutes 2         # a short look
    python -m bench.soak --churn             # the churn soak instead (see bench.churn)

Prints a table and writes bench/results/soak.json. Not part of the test suite (too long).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.stores import build_store

RESULTS = Path(__file__).parent / "results"
HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Scrapers:
    """Threads scraping /metrics back to back over keep-alive connections until stopped."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.requests = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._scrape, daemon=True) for _ in range(count)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _scrape(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            try:
                connection.request("GET", "/metrics", headers=HEADERS)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or not body:
                    raise RuntimeError(f"status {response.status}, {len(body)} bytes")
                with self.lock:
                    self.requests += 1
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                time.sleep(0.1)
        connection.close()


def run(minutes: float, scrapers: int, jobs: int, sample: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/soak.sqlite"
        print(f"building a {jobs:,}-job store ...", flush=True)
        build_store(url, jobs)
        port = free_port()
        exporter = subprocess.Popen(
            [sys.executable, "-m", "exporter", "serve", "--db-url", url,
             "--listen-address", f"127.0.0.1:{port}", "--poll-interval", "15",
             "--max-jobs", str(max(jobs, 20_000)), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            _wait_ready(port)
            load = Scrapers(port, scrapers)
            load.start()
            samples = []
            started = time.monotonic()
            end = started + minutes * 60
            print(f"{'elapsed':>8} {'rss MiB':>8} {'req/s':>8} {'errors':>7}", flush=True)
            last_requests, last_time = 0, started
            while time.monotonic() < end:
                time.sleep(min(sample, max(0.0, end - time.monotonic())))
                now = time.monotonic()
                requests = load.requests
                row = {
                    "elapsed_s": round(now - started, 1),
                    "rss_mib": round(rss_mib(exporter.pid), 1),
                    "req_per_s": round((requests - last_requests) / (now - last_time), 1),
                    "errors": len(load.errors),
                }
                last_requests, last_time = requests, now
                samples.append(row)
                print(
                    f"{row['elapsed_s']:>8} {row['rss_mib']:>8} {row['req_per_s']:>8} "
                    f"{row['errors']:>7}",
                    flush=True,
                )
            load.join()
        finally:
            exporter.terminate()
            exporter.wait(timeout=15)
    return verdict(samples, load.requests, load.errors, minutes, scrapers, jobs)


def _wait_ready(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the exporter did not become ready")


def verdict(
    samples: list[dict[str, Any]], requests: int, errors: list[str], minutes: float,
    scrapers: int, jobs: int,
) -> dict[str, Any]:  # fmt: skip
    warm = samples[max(1, len(samples) // 10) :] or samples
    tenth = max(1, len(warm) // 10)
    early = statistics.median(s["rss_mib"] for s in warm[:tenth])
    late = statistics.median(s["rss_mib"] for s in warm[-tenth:])
    growth = late - early
    flat = growth <= max(5.0, early * 0.05)
    report = {
        "benchmark": "soak",
        "minutes": minutes,
        "scrapers": scrapers,
        "jobs": jobs,
        "requests": requests,
        "errors": len(errors),
        "first_errors": errors[:5],
        "rss_mib_after_warmup": early,
        "rss_mib_at_end": late,
        "rss_growth_mib": round(growth, 1),
        "memory_flat": flat,
        "passed": flat and not errors,
        "samples": samples,
    }
    print(
        f"\n{requests:,} scrapes, {len(errors)} errors; RSS {early:.1f} -> {late:.1f} MiB "
        f"({growth:+.1f}): {'PASS' if report['passed'] else 'FAIL'}"
    )
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if "--churn" in argv:  # the churn soak (bench.churn) takes the rest of the options
        from bench import churn

        return churn.main([a for a in argv if a != "--churn"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--scrapers", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    args = parser.parse_args(argv)
    report = run(args.minutes, args.scrapers, args.jobs, args.sample)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
