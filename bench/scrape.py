"""/metrics under load, against a floor, plus the exporter's memory and body sizes.

For one store: runs `python -m exporter serve` as a subprocess (poll interval 2 s, so polls run
during the load), waits for /readyz, takes the body Prometheus would get (text and gzip sizes),
then runs `wrk` against it with the headers Prometheus sends. The floor, a tiny aiohttp process
serving that same body with the same headers (bench/floor_server.py), gets the same wrk runs,
alternating with the exporter's. Beside each run's req/s and latency: the CPU time per request
of the server (all its threads) and of wrk, which share the 2 cores. The exporter's VmRSS is
read after the load (several polls and thousands of scrapes in); the floor's VmRSS is that of
an aiohttp process holding the body.

    python -m bench.scrape URL [--seconds 24] [--repeats 6] [--identity] [--child]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
HEADERS = {"Accept": ACCEPT, "Accept-Encoding": "gzip"}
IDENTITY_HEADERS = {"Accept": ACCEPT}  # a scraper that does not take gzip: the plain body
POLL_INTERVAL = 2.0  # a poll every 2 s during the load: renders and polls land among the scrapes
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, (response.headers, response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, (exc.headers, exc.read())


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until /readyz answers 200 (the first poll succeeded)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError):
            if get(f"{base}/readyz", timeout=5)[0] == 200:
                return time.perf_counter() - started
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout:.0f} s")


@contextlib.contextmanager
def running(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The command in a process group of its own (signals reach its children too)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process (all its threads) and its children."""
    total = 0
    for each in (pid, *_children(pid)):
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def loaded(server_pid: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run`` (one wrk run), with the CPU time per request of the server and of wrk beside it:
    on these 2 cores both share the CPU, so what either spends per scrape is scrapes lost."""
    server, client = cpu_seconds(server_pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = max(1, result["requests"])
    client_s = after.ru_utime + after.ru_stime - client.ru_utime - client.ru_stime
    result["server_cpu_us_per_request"] = round(
        (cpu_seconds(server_pid) - server) / requests * 1e6, 1
    )
    result["wrk_cpu_us_per_request"] = round(client_s / requests * 1e6, 1)
    return result


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process and its children, in MiB."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    for each in (pid, *_children(pid)):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] += int(rest.split()[0]) / 1024
    return {"rss_mib": round(values["VmRSS"], 1), "peak_mib": round(values["VmHWM"], 1)}


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(
    url: str,
    seconds: float,
    threads: int = 2,
    connections: int = 10,
    headers: dict[str, str] = HEADERS,
) -> dict[str, Any]:
    """One wrk run with Prometheus' headers: req/s, p50/p99 in ms, errors."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    requests = re.search(r"(\d+) requests in", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(percentiles["50"]),
        "p99_ms": _ms(percentiles["99"]),
        "requests": int(requests.group(1)) if requests else 0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
        "command": f"wrk -t{threads} -c{connections} -d{seconds:g}s --latency -H 'Accept: ...'"
        + (" -H 'Accept-Encoding: gzip'" if "Accept-Encoding" in headers else ""),
    }


def measure(
    url: str,
    seconds: float,
    *,
    repeats: int = 3,
    ready_timeout: float = 300,
    identity: bool = False,
    child: bool = False,
) -> dict[str, Any]:
    """The exporter and the floor under the same wrk load, alternately; memory and body sizes.

    With ``identity``, wrk asks without ``Accept-Encoding: gzip`` (both serve the plain body).
    With ``child``, the server measured is ``bench/child_serve.py`` (polls and renders in a
    child process) instead of ``serve``; memory is then that of both processes.

    Each server gets ``repeats`` runs of ``seconds / repeats``, exporter and floor in turn, so
    load from elsewhere on the machine falls on both. The exporter is stopped (SIGSTOP) while
    the floor runs, so its polls and renders do not steal the floor's CPU; the floor is idle
    while the exporter runs. Per server: req/s is the mean of its runs, p50 and p99 the medians.
    """
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    each = max(1, round(seconds / repeats))  # wrk takes whole seconds only
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        program = ["bench.child_serve"] if child else ["exporter", "serve"]
        exporter = [
            sys.executable, "-m", *program, "--db-url", url,
            "--listen-address", f"127.0.0.1:{port}", "--poll-interval", f"{POLL_INTERVAL:g}",
            "--log-level", "warning",
        ]  # fmt: skip
        result: dict[str, Any] = {
            "poll_interval": POLL_INTERVAL,
            "runs_per_server": repeats,
            "encoding": "identity" if identity else "gzip",
            "server": "bench.child_serve" if child else "serve",
        }
        load = IDENTITY_HEADERS if identity else HEADERS
        runs: dict[str, list[dict[str, Any]]] = {"exporter": [], "floor": []}
        with running(exporter, tmp / "exporter.log") as process:
            try:
                result["ready_s"] = round(wait_ready(base, process, ready_timeout), 2)
                started = time.perf_counter()
                status, (headers, gzipped) = get(f"{base}/metrics", HEADERS)
                result["first_scrape_ms"] = round((time.perf_counter() - started) * 1000, 1)
                if status != 200 or headers.get("Content-Encoding") != "gzip":
                    raise RuntimeError(f"/metrics answered {status} {dict(headers)}")
                plain = gzip.decompress(gzipped)
                content_type = headers["Content-Type"]
                result.update(
                    content_type=content_type,
                    body_bytes=len(plain),
                    body_gzip_bytes=len(gzipped),
                    series=sum(1 for line in plain.splitlines() if not line.startswith(b"#")),
                )
                (tmp / "body").write_bytes(plain)
                (tmp / "body.gz").write_bytes(gzipped)
                floor_port = free_port()
                floor_base = f"http://127.0.0.1:{floor_port}"
                floor = [
                    sys.executable, "-m", "bench.floor_server", str(floor_port),
                    str(tmp / "body"), str(tmp / "body.gz"), content_type,
                ]  # fmt: skip
                with running(floor, tmp / "floor.log") as floor_process:
                    wait_ready(floor_base, floor_process, 30)
                    status, (_, body) = get(f"{floor_base}/metrics", HEADERS)
                    assert status == 200 and body == gzipped, "the floor must serve the same bytes"
                    for _ in range(repeats):
                        runs["exporter"].append(
                            loaded(process.pid, lambda: wrk(f"{base}/metrics", each, headers=load))
                        )
                        os.killpg(process.pid, signal.SIGSTOP)  # its children too
                        try:
                            runs["floor"].append(
                                loaded(
                                    floor_process.pid,
                                    lambda: wrk(f"{floor_base}/metrics", each, headers=load),
                                )
                            )
                        finally:
                            os.killpg(process.pid, signal.SIGCONT)
                    result["floor_memory"] = proc_memory(floor_process.pid)
                time.sleep(0.2)
                result["exporter_memory"] = proc_memory(process.pid)
            except Exception:
                log = (tmp / "exporter.log").read_text(errors="replace")[-2000:]
                print(f"exporter log (tail):\n{log}", file=sys.stderr)
                raise
    for name in ("exporter", "floor"):
        each_run = runs[name]
        result[name] = {
            "req_per_s": round(statistics.mean(r["req_per_s"] for r in each_run), 1),
            "p50_ms": statistics.median(r["p50_ms"] for r in each_run),
            "p99_ms": statistics.median(r["p99_ms"] for r in each_run),
            "server_cpu_us_per_request": round(
                statistics.median(r["server_cpu_us_per_request"] for r in each_run), 1
            ),
            "wrk_cpu_us_per_request": round(
                statistics.median(r["wrk_cpu_us_per_request"] for r in each_run), 1
            ),
            "requests": sum(r["requests"] for r in each_run),
            "non_2xx": sum(r["non_2xx"] for r in each_run),
            "socket_errors": "; ".join(r["socket_errors"] for r in each_run if r["socket_errors"]),
            **result.pop(f"{name}_memory"),
            "runs": each_run,
        }
    exp, flo = result["exporter"], result["floor"]
    result["ratio_req_per_s"] = round(exp["req_per_s"] / flo["req_per_s"], 3)
    result["ratio_p50"] = round(exp["p50_ms"] / flo["p50_ms"], 3)
    result["ratio_p99"] = round(exp["p99_ms"] / flo["p99_ms"], 3)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=24, help="wrk seconds per server")
    parser.add_argument("--repeats", type=int, default=6, help="runs per server, alternating")
    parser.add_argument("--identity", action="store_true", help="scrape without gzip")
    parser.add_argument(
        "--child", action="store_true", help="measure bench/child_serve.py instead of serve"
    )
    args = parser.parse_args(argv)
    result = measure(
        args.url, args.seconds, repeats=args.repeats, identity=args.identity, child=args.child
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
