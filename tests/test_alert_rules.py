"""Prometheus alert rules: promtool checks and unit tests, and their consistency with the contract.

- ``promtool check rules`` on every rule file and ``promtool check config`` on the example
  Prometheus configuration (rule files resolve relative to it, so it checks them too).
- ``promtool test rules`` on every unit-test file under ``prometheus/``.
- Every alert the contract names exists, with ``severity``, ``summary``, ``description`` and a
  ``runbook_url`` whose anchor is a heading of ``docs/runbook.md``.
- Every metric an expression reads is in the golden list (``tests/metrics_golden.txt``) or in
  ``docs/metrics.md``.
- Every rule (alert name and ``check`` label) fires in some unit test, and every alert also has
  a test where it stays quiet.
- ``alerts.yml`` is exactly the monitoring mixin (``mixin/``) rendered with its default
  settings, and the mixin rendered with another configuration gives valid rules that pass their
  own unit tests.

Without promtool or jsonnet those tests are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from golden import golden_families, sample_names

IN_CI = os.environ.get("CI") == "true"

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
RULE_FILES = [p for p in (ALERTS, PROMETHEUS / "recording.yml") if p.exists()]
CONFIG = PROMETHEUS / "prometheus.yml"
TEST_FILES = sorted(
    [*PROMETHEUS.glob("*.test.yml"), *(PROMETHEUS / "tests").glob("*.yml")],
    key=lambda p: p.name,
)
MIXIN = ROOT / "mixin"
CUSTOM_CONFIG = MIXIN / "tests" / "custom-config.libsonnet"
CUSTOM_TESTS = MIXIN / "tests" / "custom.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"

SEVERITIES = {"critical", "warning", "info"}
DEFAULT_SELECTOR = 'job="jobstore-exporter"'  # config.libsonnet; checked against prometheus.yml
# Series an expression may read besides the exporter's: Prometheus' own per-target `up`.
PROMETHEUS_OWN = {"up"}


def _contract_path() -> Path | None:
    """The public contract: in the repository, or in shared/ beside the clone (as in CI)."""
    candidates = [
        os.environ.get("JOBSTORE_EXPORTER_CONTRACT"),
        ROOT / "docs" / "contract.md",
        ROOT.parent / "shared" / "spec" / "contract.md",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        _skip_or_fail("promtool not found on PATH (Debian: apt-get install prometheus)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def contract() -> str:
    path = _contract_path()
    if path is None:
        _skip_or_fail(
            "contract.md not found (docs/contract.md, ../shared/spec/contract.md, "
            "or $JOBSTORE_EXPORTER_CONTRACT)"
        )
    assert path is not None
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def mixin() -> ModuleType:
    """mixin/render.py, once jsonnet (the binary or the Python binding) is known to work."""
    spec = importlib.util.spec_from_file_location("mixin_render", MIXIN / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.settings()
    except module.JsonnetMissing as exc:
        _skip_or_fail(str(exc))
    return module


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)


# --- the rules, as data -------------------------------------------------------------------------


def _rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            yield from group["rules"]


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _rule_id(rule: dict[str, Any]) -> str:
    check = rule.get("labels", {}).get("check")
    return f"{rule['alert']}[{check}]" if check else rule["alert"]


# --- promtool -----------------------------------------------------------------------------------


def test_promtool_check_rules(promtool: str) -> None:
    result = _run([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config(promtool: str) -> None:
    result = _run([promtool, "check", "config", str(CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    # The config's rule_files are resolved and checked too: make sure they are ours.
    assert "SUCCESS" in result.stdout and "alerts.yml" in result.stdout, result.stdout


def test_unit_test_files_exist() -> None:
    assert TEST_FILES, "no promtool unit tests under prometheus/"
    for path in TEST_FILES:
        rule_files = yaml.safe_load(path.read_text(encoding="utf-8"))["rule_files"]
        resolved = {(path.parent / name).resolve() for name in rule_files}
        assert ALERTS.resolve() in resolved, f"{path.name} does not load alerts.yml"


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(promtool: str, test_file: Path) -> None:
    result = _run([promtool, "test", "rules", str(test_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_fires_and_every_alert_stays_quiet_in_some_test() -> None:
    """Each rule is exercised: it fires somewhere, and its alert has a quiet case too."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                if not expected:
                    quiet.add(check["alertname"])
                for alert in expected:
                    label = alert.get("exp_labels", {}).get("check")
                    fired.add(f"{check['alertname']}[{label}]" if label else check["alertname"])
    rules = _alert_rules()
    assert sorted({_rule_id(r) for r in rules} - fired) == []
    assert sorted({r["alert"] for r in rules} - quiet) == []


# --- names, labels and annotations --------------------------------------------------------------


def _contract_alerts(contract: str) -> set[str]:
    section = contract.split("## Alert rules", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([A-Za-z]+)`", section)) - {"severity", "summary", "description"}


def test_contract_alerts_exist(contract: str) -> None:
    named = _contract_alerts(contract)
    assert len(named) == 10, named
    assert sorted(named - {r["alert"] for r in _alert_rules()}) == []


@pytest.mark.parametrize("rule", _alert_rules(), ids=_rule_id)
def test_rule_labels_and_annotations(rule: dict[str, Any]) -> None:
    labels = rule.get("labels", {})
    annotations = rule.get("annotations", {})
    assert labels.get("severity") in SEVERITIES
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"missing {key}"
    assert "{{" not in annotations["summary"], "summary is plain text"
    if not rule["expr"].lstrip().startswith("absent("):  # absent() results carry no labels
        assert "$labels" in annotations["description"], "description names what it is about"
    # The APScheduler job is job_id; `job` is only ever Prometheus' scrape job, in the
    # selector that finds the exporter and among the labels that tell apps apart.
    for _, matchers in re.findall(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", rule["expr"]):
        own = matchers.replace(DEFAULT_SELECTOR, "")
        assert not re.search(r"\bjob\s*(=|!=|=~|!~)", own), f"matched on `job`: {matchers}"
    for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", rule["expr"]):
        labels = {label.strip() for label in grouping.split(",")}
        # Only as one of the group labels, always beside jobstore: never for the job_id.
        assert "job" not in labels or "jobstore" in labels, grouping


def _github_anchor(heading: str) -> str:
    text = heading.strip().strip("#").strip().replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_runbook_urls_point_at_runbook_headings(mixin: ModuleType) -> None:
    """runbook_url follows the mixin's pattern, and by default names docs/runbook.md, whose
    headings give the anchors: the link leads to a section that exists."""
    pattern = mixin.settings()["runbookUrlPattern"]
    assert pattern.split("#", 1)[0] == str(RUNBOOK.relative_to(ROOT))
    anchors = {
        _github_anchor(line)
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if re.match(r"#{1,6} ", line)
    }
    for rule in _alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url == pattern % rule["alert"].lower(), url
        assert url.split("#", 1)[1] in anchors, f"{url}: no such heading in docs/runbook.md"


def test_alerts_doc_and_runbook_cover_every_alert() -> None:
    doc = ALERTS_DOC.read_text(encoding="utf-8")
    runbook = RUNBOOK.read_text(encoding="utf-8")
    for name in {r["alert"] for r in _alert_rules()}:
        assert name in doc, f"docs/alerts.md does not mention {name}"
        assert re.search(rf"^## {name}$", runbook, re.M), f"docs/runbook.md has no ## {name}"


def test_scrape_job_matches_the_rules_selector(mixin: ModuleType) -> None:
    """The rules find the exporter by the mixin's selector: the example config must match it."""
    selector = mixin.settings()["selector"]
    found = re.fullmatch(r'job="([^"]+)"', selector)
    assert found, f"default selector {selector!r} is not a plain job matcher"
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert [job["job_name"] for job in config["scrape_configs"]] == [found.group(1)]
    for rule in _alert_rules():
        for name, matchers in re.findall(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", rule["expr"]):
            assert matchers.startswith(selector), f"{_rule_id(rule)}: {name} without the selector"


# --- the mixin ------------------------------------------------------------------------------------


def test_alerts_yml_is_the_mixin_rendered_with_defaults(mixin: ModuleType) -> None:
    assert ALERTS.read_text(encoding="utf-8") == mixin.alerts(), (
        "prometheus/alerts.yml differs from the mixin's render: run python mixin/render.py"
    )


def test_mixin_with_another_config_renders_valid_tested_rules(
    mixin: ModuleType, promtool: str, tmp_path: Path
) -> None:
    """Another scrape job, other group labels, other thresholds and runbook: the render is
    valid, and its own unit tests show each setting took effect."""
    rules = mixin.alerts(CUSTOM_CONFIG.read_text(encoding="utf-8"))
    assert 'job="jobstore-exporter"' not in rules and "dashboard_url" not in rules
    (tmp_path / "custom-alerts.yml").write_text(rules, encoding="utf-8")
    shutil.copy(CUSTOM_TESTS, tmp_path / CUSTOM_TESTS.name)
    checked = _run([promtool, "check", "rules", str(tmp_path / "custom-alerts.yml")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run([promtool, "test", "rules", str(tmp_path / CUSTOM_TESTS.name)])
    assert tested.returncode == 0, tested.stdout + tested.stderr


# --- metric names -------------------------------------------------------------------------------

_STRING_OR_COMMENT = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|`[^`]*`|#[^\n]*')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*(?![\w:])")
_IDENTIFIER = re.compile(r"[A-Za-z_:][\w:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers that are not functions, keywords or labels."""
    text = _STRING_OR_COMMENT.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for found in _IDENTIFIER.finditer(text):
        name = found.group()
        if name.lower() in _KEYWORDS or re.match(r"\s*\(", text[found.end() :]):
            continue
        names.add(name)
    return names


def test_metric_name_parser() -> None:
    expr = """
      max without (job_id, scheduler) (
        # comment naming not_a_metric's twin
        last_over_time(foo_seconds{job_id="x", s='#y'}[1h] offset 25h)
      ) - ignoring (job_id) group_right bar_total > 26 * 3600 and on() vector(1)
      or absent(up{job=~".*jobstore.*"}) unless log10(baz:rate5m) > bool 1e3
    """
    assert metric_names(expr) == {"foo_seconds", "bar_total", "up", "baz:rate5m"}


def _documented_names(text: str) -> tuple[set[str], set[str]]:
    """Names in the first column of the metric tables, and wildcard prefixes such as process_*."""
    names: set[str] = set()
    prefixes: set[str] = set()
    for name, kind in re.findall(r"^\|\s*`([A-Za-z_:][\w:]*\*?)`[^|]*\|\s*(\w+)", text, re.M):
        if name.endswith("*"):
            prefixes.add(name[:-1])
            continue
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        if kind == "summary":
            names.update(f"{name}_{suffix}" for suffix in ("sum", "count"))
    return names, prefixes


def _known_metric_names() -> tuple[set[str], set[str]]:
    """Sample names of the golden list (in the repository), plus docs/metrics.md's tables."""
    names = {name for family in golden_families().values() for name in sample_names(family)}
    prefixes: set[str] = set()
    if METRICS_DOC.exists():
        more, prefixes = _documented_names(METRICS_DOC.read_text(encoding="utf-8"))
        names |= more
    return names, prefixes


def test_every_metric_in_an_expression_is_documented() -> None:
    names, prefixes = _known_metric_names()
    assert "apscheduler_up" in names and "apscheduler_job_run_duration_seconds_bucket" in names
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    allowed = names | recorded | PROMETHEUS_OWN
    unknown = {
        f"{_rule_id(rule) if 'alert' in rule else rule['record']}: {name}"
        for rule in _rules()
        for name in metric_names(rule["expr"])
        if name not in allowed and not any(name.startswith(p) for p in prefixes)
    }
    assert sorted(unknown) == [], "metrics named in neither tests/metrics_golden.txt nor docs"
