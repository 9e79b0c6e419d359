"""Writes the metric reference tables of docs/metrics.md from the metric table.

    python -m exporter.sidecar.metrics.docs            # rewrite docs/metrics.md in place
    python -m exporter.sidecar.metrics.docs --check    # exit 1 (saying so) when it is out of date

The prose around the tables is written by hand; each table sits between two markers naming its
section (``<!-- metric-table: jobstore -->`` ... ``<!-- /metric-table -->``) and is regenerated
from ``exporter/sidecar/metrics/families.py``, so the reference can never list a metric the code
lacks or miss one it serves.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from exporter.sidecar.metrics.families import FAMILIES

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.sidecar.metrics.docs", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="only say whether it is up to date")
    parser.add_argument("path", nargs="?", type=Path, default=DOC)
    args = parser.parse_args(argv)
    try:
        old = args.path.read_text(encoding="utf-8")
        new = render(old)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if new == old:
        return 0
    if args.check:
        print(
            f"{args.path} is out of date with exporter/sidecar/metrics/families.py: run "
            "python -m exporter.sidecar.metrics.docs",
            file=sys.stderr,
        )
        return 1
    args.path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
