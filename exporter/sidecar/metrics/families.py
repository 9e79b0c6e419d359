"""The metric families of ``/metrics`` in body order: the table every renderer reads.

Each family is named, typed and described once, in the ``families_*`` module of its concern
(``families_scheduler``: job store, run history, heartbeats and next-run deltas;
``families_backups``; ``families_exporter``: the exporter's own). Add a metric there, then run
``python -m exporter.sidecar.metrics.docs`` (rewrites the reference in docs/metrics.md) and add its
line to ``tests/metrics_golden.txt``; the tests fail until code, docs and golden list agree. The
order of :data:`FAMILIES` is the order of the served body (see ``table.py``).
"""

from __future__ import annotations

from exporter.sidecar.metrics.families_backups import BACKUPS
from exporter.sidecar.metrics.families_exporter import EXPORTER_STATIC, RENDER
from exporter.sidecar.metrics.families_scheduler import (
    DELTAS,
    JOB_STORE,
    LIVENESS_CLOCK,
    LIVENESS_STATIC,
    RUN_HISTORY,
)
from exporter.sidecar.metrics.table import Family

FAMILIES: tuple[Family, ...] = (
    *JOB_STORE,
    *RUN_HISTORY,
    *BACKUPS,
    *LIVENESS_STATIC,
    *EXPORTER_STATIC,
    *DELTAS,
    *LIVENESS_CLOCK,
    *RENDER,
)

BY_NAME: dict[str, Family] = {item.name: item for item in FAMILIES}


def family(name: str) -> Family:
    """The family called ``name`` (as queried: counters with ``_total``)."""
    return BY_NAME[name]
