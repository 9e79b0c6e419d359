"""A real Prometheus for the end-to-end tests: its process, its HTTP API, and the test copies of
the shipped alert rules and dashboard queries.

Also the job functions the end-to-end scheduler references by "prom_helpers:name" (tests/ is on
sys.path), so they run in the test process and share its state.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import support
import yaml
from support import free_port

ROOT = Path(__file__).resolve().parent.parent
ALERTS_PATH = ROOT / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "grafana" / "dashboards"
OVERVIEW = "jobstore-exporter.json"
JOB_DETAIL = "jobstore-exporter-job.json"

POLL = 0.2  # seconds between two looks at Prometheus' API
WAIT = 30.0  # longest wait for any one condition

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    what: str,
    timeout: float = WAIT,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll `condition` every POLL seconds until it returns something truthy; return that."""
    return support.wait_for(condition, timeout, what, interval=POLL, details=details)


# --- job functions ------------------------------------------------------------------------------

RELEASE = threading.Event()
_calls: dict[str, int] = {}


def reset_jobs() -> None:
    RELEASE.clear()
    _calls.clear()


def hold() -> None:
    """Returns at once the first time; later runs last until the test releases them (or two
    minutes pass), like a long job whose previous run finished."""
    _calls["hold"] = _calls.get("hold", 0) + 1
    if _calls["hold"] > 1:
        RELEASE.wait(120)


def fail_first() -> None:
    """Fails on its first run only, like a job that hit a transient error once and recovered."""
    _calls["fail_first"] = _calls.get("fail_first", 0) + 1
    if _calls["fail_first"] == 1:
        raise RuntimeError("transient failure on purpose")


# --- processes ----------------------------------------------------------------------------------


# Loopback only: never through a proxy the environment may name.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        support.stop(proc)


def _wait_ready(proc: subprocess.Popen[str], url: str, what: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while _get(url)[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise AssertionError(f"{what} did not become ready:\n{log.read_text()[-4000:]}")
        time.sleep(POLL / 2)


@contextlib.contextmanager
def exporter(
    db_url: str,
    backup_dir: Path | None,
    log: Path,
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    poll: float = 0.5,
) -> Iterator[str]:
    """`python -m exporter serve` on a loopback port, polling every `poll` seconds, with more
    flags in `args` and settings in `env` (JOBSTORE_EXPORTER_*); yields host:port."""
    address = f"127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "exporter", "serve", "--db-url", db_url,
        "--poll-interval", str(poll), "--listen-address", address, *args,
    ]  # fmt: skip
    if backup_dir is not None:
        command += ["--backup-dir", str(backup_dir)]
    environment = {**os.environ, **(env or {})}
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, text=True, env=environment
        )
    try:
        _wait_ready(proc, f"http://{address}/readyz", "the exporter", log)
        yield address
    finally:
        _stop(proc)


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


@contextlib.contextmanager
def prometheus(
    binary: str,
    target: str | dict[str, tuple[list[str], str]],
    rules: Path,
    workdir: Path,
) -> Iterator[Prometheus]:
    """Prometheus scraping `target` as job `jobstore-exporter` every second (or, given a dict,
    each scrape job name's targets at its interval), evaluating `rules` every second, with its
    storage under `workdir`."""
    jobs = {"jobstore-exporter": ([target], "1s")} if isinstance(target, str) else target
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        # The rules select the scrape job jobstore-exporter by default.
                        "job_name": name,
                        "scrape_interval": interval,
                        "scrape_timeout": interval,
                        "static_configs": [{"targets": targets}],
                    }
                    for name, (targets, interval) in jobs.items()
                ],
            }
        )
    )
    address = f"127.0.0.1:{free_port()}"
    log = workdir / "prometheus.log"
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={address}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=workdir
        )
    try:
        _wait_ready(proc, f"http://{address}/-/ready", "Prometheus", log)
        yield Prometheus(f"http://{address}", log)
    finally:
        _stop(proc)


# --- the HTTP API -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    status: str
    result_type: str
    result: list[Any]  # series (dicts); for a scalar, [time, "value"]
    error: str

    @property
    def numbers(self) -> list[float]:
        """The values of an instant vector (or scalar) as floats, NaN included."""
        if self.result_type == "scalar":
            return [float(self.result[1])]
        values = []
        for series in self.result:
            if "value" in series:
                values.append(float(series["value"][1]))
            else:
                values.extend(float(v) for _, v in series["values"])
        return values

    @property
    def has_number(self) -> bool:
        """At least one sample that is a real number (not NaN or ±Inf)."""
        return any(math.isfinite(v) for v in self.numbers)


@dataclass(frozen=True)
class Prometheus:
    base: str
    log: Path

    def api(self, path: str, **params: str | list[str]) -> dict[str, Any]:
        query = urllib.parse.urlencode(params, doseq=True)
        status, body = _get(f"{self.base}/api/v1/{path}?{query}", timeout=10)
        if not body:
            raise AssertionError(f"no answer from Prometheus for {path} (HTTP {status})")
        answer: dict[str, Any] = json.loads(body)
        return answer

    def query(self, expr: str) -> Result:
        answer = self.api("query", query=expr)
        data = answer.get("data") or {}
        return Result(
            answer["status"],
            data.get("resultType", ""),
            data.get("result", []),
            answer.get("error", ""),
        )

    def query_range(self, expr: str, seconds: float, step: str = "1s") -> Result:
        now = time.time()
        answer = self.api(
            "query_range", query=expr, start=f"{now - seconds:.3f}", end=f"{now:.3f}", step=step
        )
        data = answer.get("data") or {}
        return Result(
            answer["status"], data.get("resultType", ""), data.get("result", []),
            answer.get("error", ""),
        )  # fmt: skip

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None when it returns nothing."""
        result = self.query(expr)
        assert result.status == "success", (expr, result.error)
        numbers = result.numbers
        assert len(numbers) <= 1, (expr, result.result)
        return numbers[0] if numbers else None

    def label_values(self, label: str, match: str) -> list[str]:
        """What Grafana's `label_values(match, label)` lists."""
        answer = self.api(f"label/{label}/values", **{"match[]": [match]})
        assert answer["status"] == "success", (label, match, answer)
        values: list[str] = answer["data"]
        return values

    def alerts(self) -> list[dict[str, Any]]:
        """Every active (pending or firing) alert."""
        answer = self.api("alerts")
        assert answer["status"] == "success", answer
        alerts: list[dict[str, Any]] = answer["data"]["alerts"]
        return alerts

    def firing(self) -> set[tuple[str, str]]:
        """(alertname, check) of every firing alert."""
        return {
            (a["labels"]["alertname"], a["labels"].get("check", ""))
            for a in self.alerts()
            if a["state"] == "firing"
        }

    def rules(self) -> list[dict[str, Any]]:
        answer = self.api("rules")
        assert answer["status"] == "success", answer
        return [rule for group in answer["data"]["groups"] for rule in group["rules"]]

    def evaluations_since(self, since: float) -> bool:
        """Whether every alerting rule has been evaluated after `since` (epoch seconds)."""
        stamps = [r.get("lastEvaluation", "") for r in self.rules() if r["type"] == "alerting"]
        return bool(stamps) and all(_epoch(s) > since for s in stamps)


def _epoch(rfc3339: str) -> float:
    """Prometheus' RFC 3339 timestamps (nanosecond fractions, `Z` or an offset) as epoch."""
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", rfc3339)
    if match is None:
        return 0.0
    head, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(head + (zone if zone != "Z" else "+00:00")).timestamp()
    return stamp + (float(fraction) if fraction else 0.0)


# --- the alert rules, with short `for` ----------------------------------------------------------


def fast_rules(
    destination: Path, for_: str, overrides: dict[tuple[str, str], str] | None = None
) -> dict[str, Any]:
    """Write alerts.yml to `destination` with every `for:` set to `for_`, or to the value
    `overrides` gives for the rule's (alertname, check label); return the rules written.

    Only `for` changes: expressions, labels and annotations are copied unchanged, so the test
    exercises the shipped expressions.
    """
    original = yaml.safe_load(ALERTS_PATH.read_text(encoding="utf-8"))
    rules = yaml.safe_load(ALERTS_PATH.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                key = (rule["alert"], rule.get("labels", {}).get("check", ""))
                rule["for"] = (overrides or {}).get(key, for_)
    destination.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    copied: dict[str, Any] = yaml.safe_load(destination.read_text(encoding="utf-8"))
    for group, shipped in zip(copied["groups"], original["groups"], strict=True):
        for rule, before in zip(group["rules"], shipped["rules"], strict=True):
            assert {k: v for k, v in rule.items() if k != "for"} == {
                k: v for k, v in before.items() if k != "for"
            }
    return copied


def shipped_rules() -> list[tuple[str, str]]:
    """(alertname, check label) of every rule in alerts.yml."""
    rules = yaml.safe_load(ALERTS_PATH.read_text(encoding="utf-8"))
    return sorted(
        (r["alert"], r.get("labels", {}).get("check", ""))
        for g in rules["groups"]
        for r in g["rules"]
    )


# --- the dashboard's queries --------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardQuery:
    panel: str  # "<id> <title> <refId>"
    expr: str
    range: bool  # drawn over time (a range query in Grafana) rather than an instant one


def dashboard(name: str = OVERVIEW) -> dict[str, Any]:
    """The overview (default) or the per-job drill-down (JOB_DETAIL)."""
    loaded: dict[str, Any] = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
    return loaded


def dashboard_queries(board: dict[str, Any]) -> list[DashboardQuery]:
    queries = []
    for panel in board.get("panels", []):
        for item in [panel, *panel.get("panels", [])]:  # panels of collapsed rows too
            for target in item.get("targets", []):
                if target.get("expr"):
                    queries.append(
                        DashboardQuery(
                            f"{item.get('id')} {item.get('title')} {target.get('refId')}",
                            target["expr"],
                            bool(target.get("range")),
                        )
                    )
    return queries


def query_variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in board["templating"]["list"] if v.get("type") == "query"]


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<match>.+?)\s*,\s*(?P<label>\w+)\s*\)\s*$")


def regex_escape(value: str) -> str:
    """How Grafana writes one selected value into a `=~"..."` matcher of a PromQL query:
    regex metacharacters escaped, then backslashes doubled for the string literal."""
    escaped = re.sub(r"([\\^$*+?.()|\[\]{}])", r"\\\1", value)
    return escaped.replace("\\", "\\\\")


def substitute(expr: str, variables: dict[str, str], rate_interval: str = "1m") -> str:
    """Replace Grafana's variables: the template ones (already formatted) and the globals."""
    globals_ = {
        "__rate_interval": rate_interval,
        "__interval": "1s",
        "__range": "5m",
        "__range_s": "300",
        "__interval_ms": "1000",
    }
    values = {**globals_, **variables}

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)
