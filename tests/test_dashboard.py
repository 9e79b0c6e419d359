"""Lint checks for the Grafana dashboards and their provisioning files.

The dashboards are the monitoring mixin's (mixin/) render with its defaults: an overview of the
selected stores (no per-job variable; per-job panels show the worst N jobs) and a per-job
drill-down with a single-select job.

The rules follow Grafana's dashboard linter (grafana/dashboard-linter): a templated Prometheus
datasource used everywhere, `job` and `instance` variables and matchers, `$__rate_interval` in
every range, counters only through rate/irate/increase, titles, descriptions and units on every
panel. On top of those: the dashboard is valid under Grafana's published JSON schema, every
query names only metrics and labels of the public contract, queries parse (and, with promtool,
return data for a sample of the exporter's metrics), and the provisioning files agree with the
dashboard.

External pieces (the shared schema and contract, `jsonschema`, `promtool`) skip their checks
when missing, except under ``CI=true``, where a missing piece fails: CI must not go green
having silently checked nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from golden import golden_families

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
DASHBOARD_PATH = DASHBOARDS_DIR / "jobstore-exporter.json"
JOB_DASHBOARD_PATH = DASHBOARDS_DIR / "jobstore-exporter-job.json"
MIXIN = ROOT / "mixin"
CUSTOM_CONFIG = MIXIN / "tests" / "custom-config.libsonnet"
ALERTS_PATH = ROOT / "prometheus" / "alerts.yml"
DATASOURCES_PATH = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS_PATH = ROOT / "grafana" / "provisioning" / "dashboards" / "jobstore-exporter.yml"
DOCS_PATH = ROOT / "docs" / "dashboard.md"
PROMETHEUS_CONFIG_PATH = ROOT / "prometheus" / "prometheus.yml"
SHARED = ROOT.parent / "shared"
SCHEMA_DIR = SHARED / "data" / "grafana-schema"

IN_CI = os.environ.get("CI") == "true"

UID = "jobstore-exporter"
JOB_UID = "jobstore-exporter-job"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE_INTERVAL = "$__rate_interval"
RATE_FUNCS = {"rate", "irate", "increase"}
COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
# Labels relabelling may add to tell apps apart (the mixin's groupLabels besides `job`).
APP_LABELS = {"namespace", "app"}
# Query variables in chain order, with the matcher each selector needs and the label it filters:
# the overview has no job_id; the drill-down's job_id is single-select.
CHAIN = ["job", "instance", "jobstore", "job_id"]
GRAFANA_GLOBALS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}
UNIT_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge", "bargauge"}

# Valid units as enumerated by the dashboard linter (Grafana's valueFormats/categories.ts).
VALID_UNITS = {
    "none", "string", "short", "percent", "percentunit", "humidity", "dB", "hex0x", "hex", "sci",
    "locale", "pixel", "bytes", "decbytes", "bits", "decbits", "kbytes", "deckbytes", "mbytes",
    "decmbytes", "gbytes", "decgbytes", "tbytes", "dectbytes", "pbytes", "decpbytes", "pps",
    "binBps", "Bps", "binbps", "bps", "KiBs", "Kibits", "KBs", "Kbits", "MiBs", "Mibits", "MBs",
    "Mbits", "GiBs", "Gibits", "GBs", "Gbits", "TiBs", "Tibits", "TBs", "Tbits", "PiBs", "Pibits",
    "PBs", "Pbits", "dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeAsUS",
    "dateTimeAsUSNoDateIfToday", "dateTimeAsLocal", "dateTimeAsLocalNoDateIfToday",
    "dateTimeAsSystem", "dateTimeFromNow", "hertz", "ns", "µs", "ms", "s", "m", "h", "d",
    "dtdurationms", "dtdurations", "dthms", "dtdhms", "timeticks", "clockms", "clocks", "cps",
    "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm", "bool", "bool_yes_no",
    "bool_on_off",
}  # fmt: skip


def unavailable(reason: str) -> None:
    """Skip locally, fail under CI=true."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this check must run)", pytrace=False)
    pytest.skip(reason)


# --- the dashboard --------------------------------------------------------------------------


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


DASHBOARD = load_dashboard()
JOB_DASHBOARD = load_dashboard(JOB_DASHBOARD_PATH)
BOARDS = {"overview": DASHBOARD, "job": JOB_DASHBOARD}


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels of collapsed rows


def variables_of(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


BOARD_OF: dict[int, str] = {}
PANELS = []
for _name, _board in BOARDS.items():
    for _panel in all_panels(_board):
        BOARD_OF[id(_panel)] = _name
        PANELS.append(_panel)
QUERY_PANELS = [p for p in PANELS if p["type"] != "row"]
TARGETS = [(p, t) for p in QUERY_PANELS for t in p.get("targets", [])]
VARIABLES = variables_of(JOB_DASHBOARD)  # the drill-down has every variable of the overview
CHAINS = {"overview": CHAIN[:3], "job": CHAIN}


def panel_id(panel: dict[str, Any]) -> str:
    board = BOARD_OF.get(id(panel), "?")
    return f"{board}-{panel.get('id')}-{panel.get('title', '?')}"


def target_id(item: tuple[dict[str, Any], dict[str, Any]]) -> str:
    panel, target = item
    return f"{panel_id(panel)}-{target.get('refId')}"


# --- a small PromQL reader ------------------------------------------------------------------

TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<range>\[[^\[\]]*\])
    | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}])
    """,
    re.VERBOSE,
)
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
MODIFIERS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"} | MODIFIERS
MATCH_OPS = {"=", "!=", "=~", "!~"}


@dataclass
class Selector:
    name: str
    matchers: list[tuple[str, str, str]]
    range: str | None = None
    func: str | None = None  # the call whose parentheses directly enclose the selector


@dataclass
class Query:
    expr: str
    selectors: list[Selector] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    groupings: list[list[str]] = field(default_factory=list)
    created_labels: set[str] = field(default_factory=set)  # by label_replace

    def matchers(self, selector: Selector) -> dict[str, tuple[str, str]]:
        return {label: (op, value) for label, op, value in selector.matchers}


class PromQLError(ValueError):
    pass


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"unexpected character {expr[pos]!r} at {pos} in {expr!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group()))
        pos = m.end()
    return tokens


def parse_promql(expr: str) -> Query:
    """Read selectors, calls and label lists; raise PromQLError on malformed input.

    Not a full parser: enough to lint queries (balanced brackets, well-formed matchers, what
    each selector is wrapped in), with promtool doing real parsing where it is installed.
    """
    query = Query(expr)
    tokens = tokenize(expr)
    stack: list[str | None] = []  # the call each open parenthesis belongs to
    label_replace_args: list[int] = []  # argument index, per open label_replace call
    i = 0

    def peek(offset: int = 0) -> tuple[str, str]:
        j = i + offset
        return tokens[j] if j < len(tokens) else ("end", "")

    def label_list() -> list[str]:
        nonlocal i
        if peek() != ("op", "("):
            raise PromQLError(f"expected a label list after {tokens[i - 1][1]!r} in {expr!r}")
        i += 1
        labels = []
        while peek() != ("op", ")"):
            kind, text = peek()
            if kind == "ident":
                labels.append(text)
            elif (kind, text) != ("op", ","):
                raise PromQLError(f"bad label list in {expr!r}")
            i += 1
        i += 1
        return labels

    def matchers() -> list[tuple[str, str, str]]:
        nonlocal i
        i += 1  # "{"
        out = []
        while peek() != ("op", "}"):
            (k1, label), (k2, op), (k3, value) = peek(), peek(1), peek(2)
            if k1 != "ident" or k2 != "op" or op not in MATCH_OPS or k3 != "string":
                raise PromQLError(f"malformed label matcher in {expr!r}")
            out.append((label, op, value[1:-1]))
            i += 3
            if peek() == ("op", ","):
                i += 1
            elif peek() != ("op", "}"):
                raise PromQLError(f"unterminated label matchers in {expr!r}")
        i += 1
        return out

    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "ident" and text in MODIFIERS:
            i += 1
            query.groupings.append(label_list())
            continue
        if kind == "ident" and (text in AGGREGATIONS or peek(1) == ("op", "(")):
            query.calls.append(text)
            i += 1
            if peek()[1] in ("by", "without"):
                i += 1
                query.groupings.append(label_list())
            if peek() != ("op", "("):
                raise PromQLError(f"{text} without arguments in {expr!r}")
            stack.append(text)
            if text == "label_replace":
                label_replace_args.append(0)
            i += 1
            continue
        if kind == "ident" and text not in KEYWORDS:
            i += 1
            selector = Selector(text, matchers() if peek() == ("op", "{") else [])
            if peek()[0] == "range":
                selector.range = peek()[1][1:-1]
                i += 1
            selector.func = stack[-1] if stack else None
            query.selectors.append(selector)
            continue
        if (kind, text) == ("op", "{"):
            raise PromQLError(f"selector without a metric name in {expr!r}")
        if kind == "range":
            raise PromQLError(f"range or subquery not directly after a selector in {expr!r}")
        if (kind, text) == ("op", "("):
            stack.append(None)
        elif (kind, text) == ("op", ")"):
            if not stack:
                raise PromQLError(f"unbalanced ')' in {expr!r}")
            if stack.pop() == "label_replace":
                label_replace_args.pop()
        elif (kind, text) == ("op", "}"):
            raise PromQLError(f"unbalanced '}}' in {expr!r}")
        elif (kind, text) == ("op", ",") and stack and stack[-1] == "label_replace":
            label_replace_args[-1] += 1
        elif (
            kind == "string"
            and stack
            and stack[-1] == "label_replace"
            and (label_replace_args[-1] == 1)
        ):
            query.created_labels.add(text[1:-1])
        i += 1
    if stack:
        raise PromQLError(f"unbalanced '(' in {expr!r}")
    if tokens and tokens[-1][0] == "op" and tokens[-1][1] not in (")", "}"):
        raise PromQLError(f"expression ends with an operator: {expr!r}")
    return query


@cache
def query_of(expr: str) -> Query:
    return parse_promql(expr)


def test_promql_reader_catches_malformed_queries() -> None:
    bad = [
        'sum(rate(x_total{job=~"$job"}[$__rate_interval])',
        'x{job=~"$job"',
        "x{job=~$job}",
        "sum by (le (x)",
        "x +",
        '{__name__="x"}',
    ]
    for expr in bad:
        with pytest.raises(PromQLError):
            parse_promql(expr)
    q = parse_promql(
        'label_replace(max by (a) (m{job=~"$job"}) == 1, "res", "ok", "", "") '
        'or sum by (b) (rate(c_total{x="1"}[$__rate_interval]))'
    )
    assert [s.name for s in q.selectors] == ["m", "c_total"]
    assert q.selectors[1].func == "rate" and q.selectors[1].range == RATE_INTERVAL
    assert q.created_labels == {"res"}
    assert q.groupings == [["a"], ["b"]]


# --- the contract ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    labels: frozenset[str]


@cache
def contract() -> dict[str, Family]:
    """The metric families, from the golden list in the repository (tests/metrics_golden.txt)."""
    return {
        name: Family(name, item.type, frozenset(item.labels))
        for name, item in golden_families().items()
    }


def families() -> dict[str, Family]:
    return contract()


def family_of(name: str, known: dict[str, Family]) -> Family | None:
    """The family a sample name belongs to: itself, a histogram's series, a counter's _total."""
    if name in known:
        return known[name]
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and known.get(base, Family("", "", frozenset())).type == "histogram":
            return known[base]
    base = name.removesuffix("_total")
    if base != name and known.get(base, Family("", "", frozenset())).type == "counter":
        return known[base]
    return None


def test_contract_tables_are_read() -> None:
    known = families()
    assert known["apscheduler_job_runs_total"].type == "counter"
    assert known["apscheduler_job_run_duration_seconds"].type == "histogram"
    assert known["apscheduler_jobs"].labels == {"jobstore", "state"}
    assert family_of("apscheduler_job_run_duration_seconds_bucket", known) is not None
    assert family_of("apscheduler_job_runs", known) is None


# --- dashboard-level rules ------------------------------------------------------------------


def test_dashboard_identity_is_stable() -> None:
    assert sorted(p.name for p in DASHBOARDS_DIR.glob("*.json")) == sorted(
        [DASHBOARD_PATH.name, JOB_DASHBOARD_PATH.name]
    )
    assert (DASHBOARD["uid"], JOB_DASHBOARD["uid"]) == (UID, JOB_UID)
    for board in BOARDS.values():
        assert board["id"] is None, "id must be null so Grafana assigns its own"
        assert board["title"]
        assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 39


def test_no_import_placeholders() -> None:
    """`__inputs`/`__requires` only work through the Import screen; provisioning can't."""
    for path, board in ((DASHBOARD_PATH, DASHBOARD), (JOB_DASHBOARD_PATH, JOB_DASHBOARD)):
        assert "__inputs" not in board and "__requires" not in board
        assert "${DS_" not in path.read_text(encoding="utf-8")


def test_dashboard_is_not_editable() -> None:
    """Linter rule uneditable-dashboard: provisioned dashboards are changed in git."""
    assert all(board["editable"] is False for board in BOARDS.values())


def mixin_render() -> Any:
    spec = importlib.util.spec_from_file_location("mixin_render", MIXIN / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboards_are_the_mixin_rendered_with_defaults() -> None:
    render = mixin_render()
    try:
        boards = render.dashboards()
    except render.ToolMissing as exc:
        unavailable(str(exc))
    for name, text in boards.items():
        assert (DASHBOARDS_DIR / name).read_text(encoding="utf-8") == text, (
            f"grafana/dashboards/{name} is out of date: run python mixin/render.py"
        )


def test_a_custom_config_renders_alerts_and_dashboards_in_one_command(tmp_path: Path) -> None:
    """`python mixin/render.py --config FILE --out DIR` renders both outputs from one set of
    settings (mixin/tests/custom-config.libsonnet: apps told apart by cluster and namespace,
    backups every 6 hours, the runbook on a wiki), and leaves the shipped files alone."""
    render = mixin_render()
    try:
        render.builder()
        render.settings()
    except render.ToolMissing as exc:
        unavailable(str(exc))
    shipped = {path: path.read_bytes() for path in DASHBOARDS_DIR.glob("*.json")}
    result = subprocess.run(
        [sys.executable, str(MIXIN / "render.py"), "--config", str(CUSTOM_CONFIG),
         "--out", str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    alerts = yaml.safe_load((out / "alerts.yml").read_text(encoding="utf-8"))
    rules = [r for g in alerts["groups"] for r in g["rules"]]
    assert rules and all('job="jobstore-exporter"' not in r["expr"] for r in rules)
    assert any('job="scheduler-sidecar"' in r["expr"] for r in rules)
    assert sorted(p.name for p in (out / "dashboards").iterdir()) == sorted(p.name for p in shipped)
    assert {path: path.read_bytes() for path in DASHBOARDS_DIR.glob("*.json")} == shipped
    boards = [load_dashboard(out / "dashboards" / p.name) for p in shipped]
    panels = [p for board in boards for p in all_panels(board) if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert any("by (cluster, namespace, jobstore" in e for e in exprs)
    assert not any(re.search(r"\bapp\b", e) for e in exprs)
    (backup_age,) = [p for p in panels if p["title"] == "Since last successful backup"]
    steps = backup_age["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps if s["color"] == "red"] == [7 * 3600]
    runbook_urls = [
        link["url"]
        for p in panels
        for link in p["fieldConfig"]["defaults"].get("links", [])
        if "Runbook" in link["title"]
    ]
    assert runbook_urls
    assert all(u.startswith("https://wiki.example.com/apscheduler-runbook#") for u in runbook_urls)
    for board in boards:
        assert_valid(schema_validator("dashboard"), board, f"the {board['uid']} dashboard")


def test_the_sdk_is_a_build_dependency_only() -> None:
    """grafana-foundation-sdk builds the committed JSON; the exporter never needs it. Pre-1.0,
    so pinned exactly."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any("grafana-foundation-sdk" in d for d in project["dependencies"])
    (pin,) = project["optional-dependencies"]["dashboards"]
    assert re.fullmatch(r"grafana-foundation-sdk==\d+!\d+\.\d+\.\d+", pin)
    for path in (ROOT / "exporter").rglob("*.py"):
        assert "grafana_foundation_sdk" not in path.read_text(encoding="utf-8"), path


def test_the_two_dashboards_link_to_each_other() -> None:
    """Per-job tables of the overview open the drill-down on their job; each dashboard links to
    the other; runbook links lead to a section of docs/runbook.md."""
    assert [link["url"] for link in DASHBOARD["links"]] == [f"/d/{JOB_UID}"]
    assert [link["url"] for link in JOB_DASHBOARD["links"]] == [f"/d/{UID}"]
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    per_job_tables = 0
    for panel in QUERY_PANELS:
        links = panel["fieldConfig"]["defaults"].get("links", [])
        for link in links:
            if "#" in link["url"] and "runbook" in link["url"]:
                anchor = link["url"].split("#", 1)[1]
                assert re.search(rf"^## {anchor}$", runbook, re.M | re.I), link["url"]
        if BOARD_OF[id(panel)] == "overview" and panel["type"] == "table":
            columns = set(panel["transformations"][-1]["options"]["renameByName"].values())
            if "Job ID" in columns:
                per_job_tables += 1
                urls = [link["url"] for link in links]
                assert any(u.startswith(f"/d/{JOB_UID}?") and "var-job_id=" in u for u in urls)
    assert per_job_tables >= 3


def test_colours_are_the_alert_thresholds() -> None:
    """The backup-age panels turn red where APSchedulerBackupMissing fires, and the heartbeat
    age where APSchedulerSchedulerDown does: both come from the mixin's one config."""
    rules = yaml.safe_load(ALERTS_PATH.read_text(encoding="utf-8"))["groups"]
    exprs = {(r["alert"], r["labels"].get("check")): r["expr"] for g in rules for r in g["rules"]}

    def threshold(key: tuple[str, str]) -> float:
        found = re.search(r"> (\d+)\s*$", exprs[key].split("\n")[0])
        assert found, exprs[key]
        return float(found.group(1))

    def red(title: str) -> float:
        (panel,) = [p for p in QUERY_PANELS if p.get("title") == title]
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        return float(next(s["value"] for s in steps if s["color"] == "red"))

    backup = threshold(("APSchedulerBackupMissing", "last_success"))
    assert red("Since last successful backup") == red("Backup age") == backup
    assert red("Heartbeat age") == threshold(("APSchedulerSchedulerDown", "heartbeat"))


# --- template variables ---------------------------------------------------------------------


def test_datasource_variable() -> None:
    """Linter rule template-datasource: one datasource variable named `datasource`."""
    ds_vars = [v for v in VARIABLES.values() if v["type"] == "datasource"]
    assert len(ds_vars) == 1
    var = ds_vars[0]
    assert var["name"] == "datasource"
    assert var["label"] == "Data source"
    assert var["query"] == "prometheus"
    assert list(VARIABLES)[0] == "datasource", "datasource must come first"


@pytest.mark.parametrize(("board", "name"), [(b, n) for b, chain in CHAINS.items() for n in chain])
def test_query_variable(board: str, name: str) -> None:
    """Linter rules template-job/instance and template-on-time-change-reload; the drill-down's
    job is one job (a 10k-job store makes no usable multi-select)."""
    var = variables_of(BOARDS[board]).get(name)
    assert var is not None, f"missing the {name} variable"
    assert var["type"] == "query"
    assert var["datasource"] == DS
    assert var["refresh"] == 2, "reload on time range change"
    if name == "job_id":
        assert var["multi"] is False and var["includeAll"] is False
    else:
        assert var["multi"] is True and var["includeAll"] is True
        assert var["allValue"] == ".+"
    if name in ("job", "instance"):
        assert var["label"] == name.title()


@pytest.mark.parametrize("board", CHAINS)
def test_query_variables_are_chained(board: str) -> None:
    variables = variables_of(BOARDS[board])
    chain = CHAINS[board]
    names = [n for n in variables if n != "datasource"]
    assert names == chain, "variables in chain order: job, instance, jobstore, job_id"
    known = families()
    for position, name in enumerate(chain):
        var = variables[name]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
        assert m, f"{name}: expected label_values(selector, label), got {var['query']!r}"
        assert m.group(2) == name
        assert var.get("definition", var["query"]) == var["query"]
        query = query_of(m.group(1))
        (selector,) = query.selectors
        family = family_of(selector.name, known)
        assert family, f"{name}: {selector.name} is not in the contract"
        assert name in family.labels | TARGET_LABELS
        filters = query.matchers(selector)
        for earlier in CHAIN[:position]:
            assert filters.get(earlier) == ("=~", f"${earlier}"), (
                f'{name} must be filtered by {earlier}=~"${earlier}"'
            )
    assert variables["job"]["query"] == "label_values(apscheduler_up, job)"


@pytest.mark.parametrize("board", CHAINS)
def test_every_variable_is_used(board: str) -> None:
    exprs = " ".join(t["expr"] for p, t in TARGETS if BOARD_OF[id(p)] == board)
    for name in CHAINS[board]:
        assert f"${name}" in exprs, f"variable {name} is never used"


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_queries_reference_defined_variables(item: tuple[dict, dict]) -> None:
    panel, target = item
    variables = variables_of(BOARDS[BOARD_OF[id(panel)]])
    for name in re.findall(r"\$\{?(\w+)", target["expr"]):
        assert name in variables or name in GRAFANA_GLOBALS, f"unknown variable ${name}"


# --- panels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("board", BOARDS)
def test_panel_ids_are_unique(board: str) -> None:
    ids = [p.get("id") for p in all_panels(BOARDS[board])]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("board", BOARDS)
def test_grid_positions_do_not_overlap(board: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in BOARDS[board]["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{panel_id(panel)} is wider than the grid"
        if panel["type"] == "row":
            assert (pos["x"], pos["w"], pos["h"]) == (0, 24, 1)
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = cells.setdefault((x, y), panel_id(panel))
                assert other == panel_id(panel), f"{panel_id(panel)} overlaps {other}"


@pytest.mark.parametrize("board", BOARDS)
def test_rows_group_the_panels(board: str) -> None:
    rows = [p for p in BOARDS[board]["panels"] if p["type"] == "row"]
    assert BOARDS[board]["panels"][0]["type"] == "row"
    assert all(r["title"] for r in rows)
    assert len({r["title"] for r in rows}) == len(rows)


@pytest.mark.parametrize("panel", QUERY_PANELS, ids=panel_id)
def test_panel_has_title_and_description(panel: dict) -> None:
    """Linter rule panel-title-description."""
    assert panel.get("title", "").strip()
    assert panel.get("description", "").strip()


@pytest.mark.parametrize("panel", QUERY_PANELS, ids=panel_id)
def test_panel_has_valid_units(panel: dict) -> None:
    """Linter rule panel-units, also for every unit set in an override."""
    if panel["type"] not in UNIT_PANELS:
        return
    config = panel.get("fieldConfig", {})
    assert config.get("defaults", {}).get("unit") in VALID_UNITS
    for override in config.get("overrides", []):
        for prop in override["properties"]:
            if prop["id"] == "unit":
                assert prop["value"] in VALID_UNITS


@pytest.mark.parametrize("panel", QUERY_PANELS, ids=panel_id)
def test_panel_uses_datasource_variable(panel: dict) -> None:
    """Linter rules panel-datasource and target datasource, plus panel-no-targets."""
    assert panel.get("datasource") == DS
    targets = panel.get("targets", [])
    assert targets, "panel has no queries"
    assert all(t.get("datasource") == DS for t in targets)
    ref_ids = [t["refId"] for t in targets]
    assert len(ref_ids) == len(set(ref_ids))
    assert all(t.get("expr", "").strip() for t in targets)


@pytest.mark.parametrize("panel", [p for p in QUERY_PANELS if p["type"] == "table"], ids=panel_id)
def test_tables_are_instant_latest_values(panel: dict) -> None:
    """Tables show latest values: instant queries in table format, with no rates over windows
    (a daily job has no runs in a 5 m window, so a rate would read as nothing happened)."""
    for target in panel["targets"]:
        assert target.get("format") == "table" and target.get("instant") is True
        assert not any(s.range for s in query_of(target["expr"]).selectors)


@pytest.mark.parametrize("panel", [p for p in QUERY_PANELS if p["type"] == "table"], ids=panel_id)
def test_table_transformations_name_existing_columns(panel: dict) -> None:
    values = {f"Value #{t['refId']}" for t in panel["targets"]}
    labels = set()
    for target in panel["targets"]:
        query = query_of(target["expr"])
        labels |= {label for group in query.groupings for label in group}
        labels |= query.created_labels
    columns = values | labels | {"Time"}
    headers = set()
    for transformation in panel.get("transformations", []):
        options = transformation["options"]
        if transformation["id"] == "organize":
            for key in ("excludeByName", "indexByName", "renameByName"):
                unknown = set(options.get(key, {})) - columns
                assert not unknown, f"organize.{key} names missing columns {unknown}"
            headers = set(options.get("renameByName", {}).values())
        if transformation["id"] == "convertFieldType":
            for conversion in options["conversions"]:
                assert conversion["targetField"] in values
    for sort in panel["options"].get("sortBy", []):
        assert sort["displayName"] in headers
    for override in panel["fieldConfig"]["overrides"]:
        assert set(override["matcher"]["options"]["names"]) <= headers


# --- queries --------------------------------------------------------------------------------


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_query_parses(item: tuple[dict, dict]) -> None:
    query = query_of(item[1]["expr"])
    assert query.selectors, "a query without any metric"


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_query_uses_contract_metrics_and_labels(item: tuple[dict, dict]) -> None:
    known = families()
    query = query_of(item[1]["expr"])
    available = set(query.created_labels) | TARGET_LABELS | APP_LABELS
    for selector in query.selectors:
        family = family_of(selector.name, known)
        assert family, f"{selector.name} is not a metric of the contract"
        allowed = family.labels | TARGET_LABELS
        if selector.name.endswith("_bucket"):
            allowed |= {"le"}
        unknown = {label for label, _, _ in selector.matchers} - allowed
        assert not unknown, f"{selector.name} has no label {unknown}"
        available |= allowed
    for group in query.groupings:
        assert set(group) <= available, f"grouping by labels no metric has: {group}"


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_selectors_filter_by_variables(item: tuple[dict, dict]) -> None:
    """Linter rules target-job and target-instance; jobstore and (on the drill-down) job_id
    where labelled."""
    known = families()
    query = query_of(item[1]["expr"])
    chain = CHAINS[BOARD_OF[id(item[0])]]
    for selector in query.selectors:
        family = family_of(selector.name, known)
        assert family
        needed = ["job", "instance"] + [
            v for v in ("jobstore", "job_id") if v in family.labels and v in chain
        ]
        filters = query.matchers(selector)
        for name in needed:
            assert filters.get(name) == ("=~", f"${name}"), (
                f'{selector.name} must filter {name}=~"${name}"'
            )


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_ranges_use_rate_interval(item: tuple[dict, dict]) -> None:
    """Linter rule target-rate-interval, for increase too and for every range."""
    query = query_of(item[1]["expr"])
    ranged = [s for s in query.selectors if s.range is not None]
    for selector in ranged:
        assert selector.range == RATE_INTERVAL, f"{selector.name}[{selector.range}]"
        assert selector.func in RATE_FUNCS, f"range on {selector.name} outside rate/increase"
    rate_calls = [c for c in query.calls if c in RATE_FUNCS]
    assert len(rate_calls) == len(ranged), "every rate/irate/increase takes a ranged selector"


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_rates_only_over_counters(item: tuple[dict, dict]) -> None:
    """No rate over a gauge; every counter through rate/irate/increase (target-counter-agg)."""
    known = families()
    for selector in query_of(item[1]["expr"]).selectors:
        family = family_of(selector.name, known)
        assert family
        if selector.func in RATE_FUNCS:
            assert selector.name.endswith(COUNTER_SUFFIXES), f"rate over {selector.name}"
            assert family.type in ("counter", "histogram"), f"rate over a {family.type}"
        if selector.name.endswith("_total") or family.type == "counter":
            assert selector.func in RATE_FUNCS, f"counter {selector.name} used without a rate"


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_histogram_quantiles(item: tuple[dict, dict]) -> None:
    query = query_of(item[1]["expr"])
    if "histogram_quantile" not in query.calls:
        return
    assert any("le" in group for group in query.groupings), "aggregate keeping `le`"
    assert all(s.name.endswith("_bucket") for s in query.selectors)


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_timestamps_are_shown_as_dates_or_ages(item: tuple[dict, dict]) -> None:
    """Unix seconds become dates (x 1000, date unit or time column) or ages (time() - x, s)."""
    panel, target = item
    # What follows `and on (...)` only selects rows (the worst N jobs), it shows no value.
    expr = target["expr"].split(" and on (", 1)[0]
    if not any(s.name.endswith("_timestamp_seconds") for s in query_of(expr).selectors):
        return
    unit = panel["fieldConfig"]["defaults"]["unit"]
    if re.match(r"^((topk|bottomk)\(\d+, )?time\(\) - ", expr):
        assert unit == "s"
        return
    assert re.search(r"\* 1000\b", expr), "timestamps in ms for Grafana: multiply by 1000"
    converted = {
        c["targetField"]
        for t in panel.get("transformations", [])
        if t["id"] == "convertFieldType"
        for c in t["options"]["conversions"]
        if c["destinationType"] == "time"
    }
    assert unit.startswith("dateTime") or f"Value #{target['refId']}" in converted


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_job_ids_are_never_called_job(item: tuple[dict, dict]) -> None:
    """`job` is Prometheus' scrape job; APScheduler job ids are `job_id`."""
    _, target = item
    assert "{{job}}" not in target.get("legendFormat", "")
    assert not any("job" in group for group in query_of(target["expr"]).groupings)


# --- Grafana's JSON schemas -----------------------------------------------------------------


@cache
def schema_validator(name: str, definition: str | None = None) -> Any:
    try:
        import jsonschema
    except ImportError:
        unavailable("jsonschema is not installed (pip install check-jsonschema)")
    path = SCHEMA_DIR / f"{name}.jsonschema.json"
    if not path.exists():
        unavailable(f"Grafana schema {path} not found (shared/ beside the repo)")
    schema = json.loads(path.read_text(encoding="utf-8"))
    if definition:
        schema = {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    return jsonschema.Draft7Validator(schema)


def assert_valid(validator: Any, instance: Any, what: str) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message[:300]}"
        for e in validator.iter_errors(instance)
    ]
    assert not errors, f"{what} is not valid:\n" + "\n".join(errors)


@pytest.mark.parametrize("board", BOARDS)
def test_dashboard_matches_grafana_schema(board: str) -> None:
    assert_valid(schema_validator("dashboard"), BOARDS[board], f"the {board} dashboard")


@pytest.mark.parametrize("panel", QUERY_PANELS, ids=panel_id)
def test_panel_matches_its_plugin_schema(panel: dict) -> None:
    path = SCHEMA_DIR / f"{panel['type']}.jsonschema.json"
    if SCHEMA_DIR.exists() and not path.exists():
        pytest.skip(f"no schema for {panel['type']} panels")
    assert_valid(schema_validator(panel["type"], "Options"), panel["options"], "options")
    definitions = json.loads(path.read_text(encoding="utf-8"))["definitions"]
    custom = panel["fieldConfig"]["defaults"].get("custom")
    if custom is not None and "FieldConfig" in definitions:
        assert_valid(schema_validator(panel["type"], "FieldConfig"), custom, "custom config")
    query_schema = schema_validator("prometheus", "Dataquery")
    for target in panel["targets"]:
        assert_valid(query_schema, target, f"target {target['refId']}")


# --- promtool: real parsing, and data for a sample of the exporter's metrics ---------------


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        unavailable("promtool is not installed (Debian package prometheus)")
    return str(path)


def concrete(expr: str) -> str:
    """A query with Grafana's variables replaced as Grafana would for "All"."""
    expr = expr.replace(RATE_INTERVAL, "1m")
    return re.sub(r"\$\{?\w+\}?", ".+", expr)


def all_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every variable (as a count by label)."""
    out = [(target_id(item), item[1]["expr"]) for item in TARGETS]
    for name in CHAIN:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", VARIABLES[name]["query"])
        assert m
        out.append((f"variable {name}", f"count by ({m.group(2)}) ({m.group(1)})"))
    return out


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    tool = promtool()
    rules = [{"record": f"dashboard:query{i}", "expr": concrete(expr)}
             for i, (_, expr) in enumerate(all_queries())]  # fmt: skip
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# Series as jobstore-exporter serves them (Prometheus adds job and instance): one healthy daily
# job, one failing, overdue and running interval job, one paused job, two schedulers.
SAMPLE_EVAL = "30m"  # time() is 1800 there
BASE = {"job": "jobstore-exporter", "instance": "app:9814", "jobstore": "default"}
BACKUP = {"job_id": "database_backup"}
CLEANUP = {"job_id": "cleanup_temp"}
SAMPLES: list[tuple[str, dict[str, str], str]] = [
    ("apscheduler_up", {}, "1"),
    ("apscheduler_jobs", {"state": "active"}, "2"),
    ("apscheduler_jobs", {"state": "paused"}, "1"),
    ("apscheduler_job_info", {**BACKUP, "name": "Daily Database Backup", "trigger": "cron",
                              "schedule": "Daily at 02:00 UTC", "executor": "default"}, "1"),
    ("apscheduler_job_info", {**CLEANUP, "name": "Cleanup", "trigger": "interval",
                              "schedule": "Every 6 hours", "executor": "default"}, "1"),
    ("apscheduler_job_info", {"job_id": "report_gen", "name": "Report", "trigger": "cron",
                              "schedule": "Weekly on Monday", "executor": "default"}, "1"),
    ("apscheduler_job_paused", {"job_id": "report_gen"}, "1"),
    ("apscheduler_job_paused", BACKUP, "0"),
    ("apscheduler_job_next_run_timestamp_seconds", BACKUP, "19800"),
    ("apscheduler_job_next_run_timestamp_seconds", CLEANUP, "1700"),
    ("apscheduler_job_next_run_delta_seconds", BACKUP, "18000"),
    ("apscheduler_job_next_run_delta_seconds", CLEANUP, "-100"),
    ("apscheduler_job_misfire_grace_seconds", CLEANUP, "60"),
    ("apscheduler_jobs_overdue", {}, "1"),
    ("apscheduler_job_overdue_seconds", CLEANUP, "100"),
    ("apscheduler_backup_info", BACKUP, "1"),
    ("apscheduler_history_up", {}, "1"),
    ("apscheduler_job_runs_total", {**BACKUP, "status": "success"}, "0+1x200"),
    ("apscheduler_job_runs_total", {**CLEANUP, "status": "success"}, "0+1x200"),
    ("apscheduler_job_runs_total", {**CLEANUP, "status": "failed"}, "0+1x200"),
    ("apscheduler_job_runs_total", {**CLEANUP, "status": "missed"}, "0+1x200"),
    ("apscheduler_job_runs_total", {**CLEANUP, "status": "skipped"}, "0+1x200"),
    ("apscheduler_job_run_duration_seconds_bucket", {**CLEANUP, "le": "0.5"}, "0+1x200"),
    ("apscheduler_job_run_duration_seconds_bucket", {**CLEANUP, "le": "+Inf"}, "0+2x200"),
    ("apscheduler_job_run_duration_seconds_sum", CLEANUP, "0+1.5x200"),
    ("apscheduler_job_run_duration_seconds_count", CLEANUP, "0+2x200"),
    ("apscheduler_job_last_run_success", BACKUP, "1"),
    ("apscheduler_job_last_run_success", CLEANUP, "0"),
    ("apscheduler_job_last_run_duration_seconds", BACKUP, "42"),
    ("apscheduler_job_last_run_duration_seconds", CLEANUP, "3"),
    ("apscheduler_job_last_success_timestamp_seconds", BACKUP, "1000"),
    ("apscheduler_job_last_success_timestamp_seconds", CLEANUP, "400"),
    ("apscheduler_job_last_failure_timestamp_seconds", CLEANUP, "1600"),
    ("apscheduler_job_consecutive_failures", BACKUP, "0"),
    ("apscheduler_job_consecutive_failures", CLEANUP, "3"),
    ("apscheduler_job_last_run_delay_seconds", CLEANUP, "0.2"),
    ("apscheduler_job_running", CLEANUP, "1"),
    ("apscheduler_job_running", BACKUP, "0"),
    ("apscheduler_job_running_since_timestamp_seconds", CLEANUP, "1200"),
    ("apscheduler_job_expected_run_timestamp_seconds", CLEANUP, "1700"),
    ("apscheduler_backup_last_run_success", {}, "1"),
    ("apscheduler_backup_last_success_timestamp_seconds", {}, "1000"),
    ("apscheduler_backup_last_failure_timestamp_seconds", {}, "100"),
    ("apscheduler_backup_last_duration_seconds", {}, "42"),
    ("apscheduler_backup_files", {}, "7"),
    ("apscheduler_backup_newest_file_timestamp_seconds", {}, "1000"),
    ("apscheduler_backup_newest_file_size_bytes", {}, "1048576"),
    ("apscheduler_backup_total_size_bytes", {}, "7340032"),
    ("apscheduler_scheduler_last_heartbeat_timestamp_seconds", {"scheduler": "a"}, "1790"),
    ("apscheduler_scheduler_last_heartbeat_timestamp_seconds", {"scheduler": "b"}, "900"),
    ("apscheduler_scheduler_running", {"scheduler": "a"}, "1"),
    ("apscheduler_scheduler_running", {"scheduler": "b"}, "0"),
    ("jobstore_exporter_poll_duration_seconds", {"source": "jobs"}, "0.01"),
    ("jobstore_exporter_last_poll_success_timestamp_seconds", {"source": "jobs"}, "1795"),
    ("jobstore_exporter_poll_errors_total", {"source": "history"}, "0+1x200"),
    ("jobstore_exporter_source_up", {"source": "jobs"}, "1"),
    ("jobstore_exporter_undecodable_jobs", {}, "0"),
]  # fmt: skip
BUILD_INFO = {"version": "0.1.0", "python_version": "3.11.7", "apscheduler_version": "3.10.4",
              "sqlalchemy_version": "2.0.30"}  # fmt: skip


def sample_series() -> list[dict[str, str]]:
    known = families()
    series = []
    for name, labels, values in SAMPLES:
        family = family_of(name, known)
        assert family, f"sample {name} is not in the contract"
        all_labels = {**BASE, **labels}
        assert set(all_labels) - TARGET_LABELS - {"le"} == family.labels, name
        series.append((name, all_labels, values))
    build = {"job": BASE["job"], "instance": BASE["instance"], **BUILD_INFO}
    assert set(build) - TARGET_LABELS == known["jobstore_exporter_build_info"].labels
    series.append(("jobstore_exporter_build_info", build, "1"))
    out = []
    for name, all_labels, values in series:
        matchers = ", ".join(f'{k}="{v}"' for k, v in all_labels.items())
        out.append({"series": f"{name}{{{matchers}}}", "values": f"{values}x200"
                    if "x" not in values else values})  # fmt: skip
    return out


def test_every_query_returns_data_for_sample_metrics(tmp_path: Path) -> None:
    """Each query, with every variable at "All", returns data once the exporter serves
    its metrics: catches label joins, filters and comparisons that can never match."""
    tool = promtool()
    queries = all_queries()
    tests = [
        {"expr": f"count({concrete(expr)}) > bool 0", "eval_time": SAMPLE_EVAL,
         "exp_samples": [{"labels": "{}", "value": 1}]}
        for _, expr in queries
    ]  # fmt: skip
    path = tmp_path / "dashboard_test.yml"
    path.write_text(yaml.safe_dump({
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "15s", "input_series": sample_series(),
                   "promql_expr_test": tests}],
    }))  # fmt: skip
    result = subprocess.run([tool, "test", "rules", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        failed = {json.loads(m) for m in re.findall(r'expr: ("(?:[^"\\]|\\.)*")', output)}
        empty = [where for (where, _), test in zip(queries, tests, strict=True)
                 if test["expr"] in failed]  # fmt: skip
        pytest.fail(f"queries returning no data: {empty}\n{output[-4000:]}")


# --- provisioning ---------------------------------------------------------------------------


def test_provisioned_datasource_matches_dashboard_default() -> None:
    config = yaml.safe_load(DATASOURCES_PATH.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    prometheus = [d for d in config["datasources"] if d["type"] == "prometheus"]
    assert len(prometheus) == 1
    source = prometheus[0]
    current = VARIABLES["datasource"]["current"]
    assert source["uid"] == current["value"]
    assert source["name"] == current["text"]
    assert source["access"] == "proxy"
    assert source["url"].startswith("http")
    # Grafana derives $__rate_interval from this: it must be the exporter's scrape interval.
    assert re.fullmatch(r"\d+[smh]", source["jsonData"]["timeInterval"])
    if PROMETHEUS_CONFIG_PATH.exists():
        assert source["jsonData"]["timeInterval"] == scrape_interval()


def scrape_interval() -> str:
    """The exporter's scrape interval in the example Prometheus configuration."""
    config = yaml.safe_load(PROMETHEUS_CONFIG_PATH.read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "jobstore-exporter"]
    return job.get("scrape_interval") or config.get("global", {}).get("scrape_interval", "1m")


def test_dashboard_provider_points_at_the_dashboards_folder() -> None:
    config = yaml.safe_load(PROVIDERS_PATH.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path.startswith("/")
    # The documented mount (and any compose file of the repo) puts grafana/dashboards there.
    mount = f"grafana/dashboards:{path}"
    assert mount in DOCS_PATH.read_text(encoding="utf-8")
    for compose in ROOT.glob("*compose*.y*ml"):
        text = compose.read_text(encoding="utf-8")
        if "grafana/dashboards" in text:
            assert mount in text, f"{compose.name} mounts the dashboards elsewhere than {path}"
        if "grafana/provisioning" in text:
            assert "grafana/provisioning:/etc/grafana/provisioning" in text


def test_docs_describe_rows_and_variables() -> None:
    docs = DOCS_PATH.read_text(encoding="utf-8")
    for board in BOARDS.values():
        for row in (p for p in board["panels"] if p["type"] == "row"):
            assert row["title"] in docs, f"docs/dashboard.md does not describe row {row['title']}"
        for name in variables_of(board):
            assert f"`{name}`" in docs, f"docs/dashboard.md does not describe variable {name}"
