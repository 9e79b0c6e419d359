"""The golden list of stable metric families (``tests/metrics_golden.txt``), for the tests.

Tests that need to know which metrics exist (alert rules, the dashboard, the metric table) read
this list from the repository, so a clone's own tests need nothing beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GOLDEN_PATH = Path(__file__).resolve().parent / "metrics_golden.txt"


@dataclass(frozen=True)
class GoldenFamily:
    name: str  # as queried: counters end in _total
    type: str  # gauge | counter | histogram
    labels: tuple[str, ...]


def golden_families() -> dict[str, GoldenFamily]:
    """Name -> family, in the order of the list."""
    families: dict[str, GoldenFamily] = {}
    for number, line in enumerate(GOLDEN_PATH.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise ValueError(f"{GOLDEN_PATH}:{number}: expected 'name type labels', got {line!r}")
        name, kind, labels = fields
        families[name] = GoldenFamily(name, kind, () if labels == "-" else tuple(labels.split(",")))
    return families


def sample_names(family: GoldenFamily) -> set[str]:
    """The sample names a family puts in a scrape (a histogram's series, not its own name)."""
    if family.type == "histogram":
        return {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return {family.name}
