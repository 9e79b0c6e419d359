"""Writes what is generated from the metric table: the reference tables of docs/metrics.md and
the dashboards' list of series by label (``mixin/lib/series.json``).

    python -m exporter.sidecar.metrics.docs            # rewrite both in place
    python -m exporter.sidecar.metrics.docs --check    # exit 1 (saying so) when one is out of date

The prose around the tables is written by hand; each table sits between two markers naming its
section (``<!-- metric-table: jobstore -->`` ... ``<!-- /metric-table -->``) and is regenerated
from ``exporter/sidecar/metrics/families.py``, so the reference can never list a metric the code
lacks or miss one it serves. The dashboards filter a series by ``job_id`` only when it is a
per-job series, and by ``jobstore`` only when it has that label: the mixin reads which series
those are from the JSON file, so a per-job family added to the table reaches the drill-down's
job filter without anyone editing the dashboards.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from exporter.sidecar.metrics.families import FAMILIES

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "metrics.md"
SERIES = ROOT / "mixin" / "lib" / "series.json"
HEADER = "| name | type | labels | meaning |\n|---|---|---|---|\n"
# Not ours but prometheus_client's, listed in the reference all the same.
EXTRA_ROWS = {
    "exporter": [
        "| `process_*` *(addition)* | various | | the standard process metrics of "
        "`prometheus_client` (resident memory, CPU seconds, open file descriptors, start "
        "time), Linux only |"
    ]
}
BLOCK = re.compile(
    r"(?P<open><!-- metric-table: (?P<section>[\w-]+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /metric-table -->)",
    re.S,
)


def table(section: str) -> str:
    """The markdown table of one section, in the order of the metric table."""
    rows = [
        f"| `{item.name}`{' *(addition)*' if item.addition else ''} | {item.kind} | "
        f"{', '.join(item.labels)} | {item.doc} |"
        for item in FAMILIES
        if item.section == section
    ]
    rows += EXTRA_ROWS.get(section, [])
    if not rows:
        raise ValueError(
            f"docs/metrics.md names a metric-table section {section!r} that no family has"
        )
    return HEADER + "\n".join(rows) + "\n"


def render(text: str) -> str:
    """``text`` with every marked table regenerated; every section must have its table."""
    found: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        found.add(match["section"])
        return match["open"] + table(match["section"]) + match["close"]

    result = BLOCK.sub(replace, text)
    missing = sorted({item.section for item in FAMILIES} - found)
    if missing:
        raise ValueError(
            f"docs/metrics.md has no table for section(s) {', '.join(missing)}: add "
            "'<!-- metric-table: NAME -->' and '<!-- /metric-table -->' lines where it belongs"
        )
    return result


def _series_names(family_name: str, kind: str) -> list[str]:
    """The series names a family's samples go by in PromQL (a histogram's three)."""
    if kind == "histogram":
        return [f"{family_name}_{suffix}" for suffix in ("bucket", "sum", "count")]
    return [family_name]


def series() -> str:
    """The mixin's list, as JSON: the per-job series (filtered by the drill-down's job) and the
    series without a ``jobstore`` label (never filtered by store), in the table's order."""
    per_job = [s for f in FAMILIES if f.scope == "job" for s in _series_names(f.name, f.kind)]
    no_store = [
        s for f in FAMILIES if "jobstore" not in f.labels for s in _series_names(f.name, f.kind)
    ]
    lists = {"generatedBy": "python -m exporter.sidecar.metrics.docs"}
    return json.dumps({**lists, "perJob": per_job, "noJobstore": no_store}, indent=2) + "\n"


def _update(path: Path, new_text: str, check: bool) -> int:
    """0 when ``path`` holds ``new_text`` (written unless ``check``), 1 when it was stale under
    ``check`` (saying so)."""
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if new_text == old:
        return 0
    if check:
        print(
            f"{path} is out of date with exporter/sidecar/metrics/families.py: run "
            "python -m exporter.sidecar.metrics.docs",
            file=sys.stderr,
        )
        return 1
    path.write_text(new_text, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.sidecar.metrics.docs", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="only say whether it is up to date")
    parser.add_argument("path", nargs="?", type=Path, default=DOC, help="the metrics reference")
    parser.add_argument(
        "--series", type=Path, default=SERIES, help="the mixin's series list (JSON)"
    )
    args = parser.parse_args(argv)
    try:
        doc = render(args.path.read_text(encoding="utf-8"))
        return max(_update(args.path, doc, args.check), _update(args.series, series(), args.check))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
