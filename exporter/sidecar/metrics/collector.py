"""Renders snapshots as Prometheus metric families, fresh on every collection.

A custom collector rather than module-level Gauge objects: families are built from the current
snapshots each time, so a job that left the store disappears from every series at once, and no
code path can forget to remove a label set (the classic stale-series bug of exporters that mutate
shared metric objects). ``*_delta_seconds`` is computed at scrape time from the scrape clock.
What the families are (names, help, labels, samples) is the metric table,
``families.py``; this module only turns it into ``prometheus_client`` families, which
stay the reference encoding the per-job encoder (``store.py``) is tested against.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from exporter import __version__
from exporter.sidecar.metrics.families import FAMILIES
from exporter.sidecar.metrics.table import Family, Histogram, Sample, Settings, Store
from exporter.sidecar.snapshot import StoreSnapshot


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


PARTS: dict[str, frozenset[str]] = {
    "static": frozenset({"static"}),
    "clock": frozenset({"clock"}),
    "all": frozenset({"static", "deltas", "clock"}),
}


class SnapshotCollector(Collector):
    """Yields the families of the metric table from the latest snapshots."""

    def __init__(
        self,
        snapshots: Callable[[], Iterable[StoreSnapshot]],
        *,
        default_grace: float = 60.0,
        heartbeat_timeout: float = 30.0,
        backup_job_ids: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        part: str = "all",
    ) -> None:
        """``part``: "static" (what only a new poll changes), "clock" (what the scrape time
        changes, but the next-run deltas: see ``deltas.py``), or "all"."""
        self.snapshots = snapshots
        self.clock = clock
        self.parts = PARTS[part]
        self.settings = Settings(
            default_grace=default_grace,
            heartbeat_timeout=heartbeat_timeout,
            backup_job_ids=dict(backup_job_ids or {}),
            build_labels=build_labels(),
        )

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        stores = [Store(snap, self.settings, now) for snap in self.snapshots()]
        for item in FAMILIES:
            if item.part in self.parts:
                yield to_metric(item, item.samples(stores, self.settings))


def build_labels() -> tuple[str, ...]:
    """The label values of ``jobstore_exporter_build_info``."""
    return (
        __version__,
        platform.python_version(),
        _dist_version("apscheduler"),
        _dist_version("sqlalchemy"),
    )


_CLASSES = {
    "gauge": GaugeMetricFamily,
    "counter": CounterMetricFamily,
    "histogram": HistogramMetricFamily,
}


def to_metric(family: Family, samples: Iterable[Sample]) -> Metric:
    """A ``prometheus_client`` family holding ``samples`` of a family of the table."""
    metric = _CLASSES[family.kind](family.name, family.help, labels=list(family.labels))
    if family.kind == "histogram":
        for labels, value in samples:
            assert isinstance(value, Histogram)
            metric.add_metric(list(labels), list(value.buckets), value.sum)  # type: ignore[call-arg]
    else:
        for labels, value in samples:
            metric.add_metric(list(labels), value)  # type: ignore[call-arg]
    return metric


def clock_registry(collector: SnapshotCollector) -> CollectorRegistry:
    """The registry of the clock part: ``collector`` (made with ``part="clock"``: families the
    scrape time changes) and the standard ``process_*`` metrics. The static part is rendered
    by ``store.MetricStore``."""
    clock = CollectorRegistry(auto_describe=False)
    clock.register(collector)
    ProcessCollector(registry=clock)
    return clock


def build_registry(collector: SnapshotCollector) -> CollectorRegistry:
    """One registry with everything ``collector`` yields: a whole body in one render."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
