"""How long the event loop that serves scrapes waits for other work, and for what.

Runs the sidecar as ``serve`` runs it (``exporter.sidecar.serving.server.serve``: the
switch interval, pollers and renders on their threads), in this process, with a poll
every 2 s and a light scraper in a child process (20 scrapes/s with Prometheus' headers, so the
clock part renders every second and each poll's body is rendered as in production). Beside the
server, a probe task sleeps 1 ms at a time on the loop; whatever keeps it waiting longer than that
(a poll or a render holding the interpreter lock, a garbage collection, a big copy on the loop
itself) shows up as lag. Each stall over ``--report-ms`` is recorded with what the other
threads were doing when the loop got the lock back, and every cyclic GC pass is timed with its
generation. Nothing here is part of the test suite.

    python -m bench.loop_lag URL [--seconds 20] [--report-ms 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from bench.scrape import ACCEPT, free_port, get
from exporter.sidecar.config import load_config
from exporter.sidecar.serving.server import serve

SCRAPER = """
import sys, time, urllib.request
url, period = sys.argv[1], float(sys.argv[2])
headers = {"Accept": sys.argv[3], "Accept-Encoding": "gzip"}
while True:
    try:
        urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10).read()
    except OSError:
        pass
    time.sleep(period)
"""


class GcTimer:
    """Every cyclic GC pass: generation, duration, the thread that ran it."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, int, float, str]] = []
        self._started: dict[int, float] = {}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        ident = threading.get_ident()
        if phase == "start":
            self._started[ident] = time.perf_counter()
        elif ident in self._started:
            began = self._started.pop(ident)
            name = threading.current_thread().name
            self.passes.append((began, info["generation"], time.perf_counter() - began, name))


def _where(frame: Any) -> str:
    """The innermost frames of a thread, the exporter's own first: ``module:function``."""
    parts: list[str] = []
    while frame is not None and len(parts) < 4:
        code = frame.f_code
        module = code.co_filename.rsplit("/", 2)
        parts.append(f"{'/'.join(module[-2:])}:{code.co_name}")
        frame = frame.f_back
    return " < ".join(parts)


async def probe(
    stalls: list[dict[str, Any]], lags: list[float], report: float, stop: asyncio.Event
) -> None:
    loop_thread = threading.get_ident()
    while not stop.is_set():
        began = time.perf_counter()
        await asyncio.sleep(0.001)
        lag = time.perf_counter() - began - 0.001
        lags.append(lag)
        if lag >= report:
            frames = sys._current_frames()
            others = {
                thread.name: _where(frames[thread.ident])
                for thread in threading.enumerate()
                if thread.ident in frames and thread.ident != loop_thread
                and not thread.name.startswith(("asyncio_", "ThreadPoolExecutor"))
            }  # fmt: skip
            stalls.append({"at": began, "lag_ms": round(lag * 1000, 2), "threads": others})


async def run(url: str, seconds: float, report_ms: float) -> dict[str, Any]:
    port = free_port()
    config = load_config(
        db_url=url, poll_interval=2.0, listen_address=f"127.0.0.1:{port}", log_level="warning"
    )
    ready = asyncio.Event()
    server = asyncio.create_task(serve(config, ready=ready))
    await ready.wait()
    base = f"http://127.0.0.1:{port}"
    while (await asyncio.to_thread(get, f"{base}/readyz"))[0] != 200:
        await asyncio.sleep(0.2)
    timer = GcTimer()
    gc.callbacks.append(timer)
    scraper = subprocess.Popen(
        [sys.executable, "-c", SCRAPER, f"{base}/metrics", "0.05", ACCEPT],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stalls: list[dict[str, Any]] = []
    lags: list[float] = []
    stop = asyncio.Event()
    started = time.perf_counter()
    probing = asyncio.create_task(probe(stalls, lags, report_ms / 1000, stop))
    try:
        await asyncio.sleep(seconds)
    finally:
        stop.set()
        await probing
        scraper.terminate()
        scraper.wait()
        gc.callbacks.remove(timer)
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    lags_ms = sorted(lag * 1000 for lag in lags)
    gcs = [(gen, ms * 1000, name) for began, gen, ms, name in timer.passes if began >= started]
    by_gen: dict[int, list[float]] = collections.defaultdict(list)
    for gen, ms, _name in gcs:
        by_gen[gen].append(ms)
    causes: collections.Counter[str] = collections.Counter()
    for stall in stalls:
        busy = [f"{name}: {where}" for name, where in stall["threads"].items()]
        causes[" | ".join(sorted(busy)) or "(loop thread only)"] += 1
    return {
        "seconds": seconds,
        "load_average": os.getloadavg(),
        "samples": len(lags_ms),
        "lag_ms": {
            "p50": round(statistics.median(lags_ms), 3),
            "p99": round(lags_ms[int(len(lags_ms) * 0.99)], 3),
            "max": round(lags_ms[-1], 2),
        },
        f"stalls_over_{report_ms:g}_ms": len(stalls),
        "worst_stalls": sorted(stalls, key=lambda s: -s["lag_ms"])[:12],
        "gc": {
            str(gen): {
                "passes": len(values),
                "max_ms": round(max(values), 2),
                "total_ms": round(sum(values), 1),
            }
            for gen, values in sorted(by_gen.items())
        },
        "gc_over_2ms": [
            (gen, round(ms, 2), name) for gen, ms, name in sorted(gcs, key=lambda g: -g[1])[:8]
        ],
        "stall_threads": causes.most_common(8),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--report-ms", type=float, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.url, args.seconds, args.report_ms)), indent=2))


if __name__ == "__main__":
    main()
