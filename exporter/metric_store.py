"""The static part of ``/metrics``, encoded per job and kept until the job changes.

``prometheus_client`` re-encodes every series of every poll, although between two polls only
the jobs whose row or run history changed have new lines: a store of 100k jobs paid its whole
size every poll and held the GIL for over a second. Here, as in kube-state-metrics' metrics
store, each job's lines of each per-job family are encoded to bytes once, when the job's
:class:`JobView` or :class:`JobRuns` changes (the sources hand out the very same objects while a
row and its history stay the same), and kept; a body is the family headers and a join of the
kept fragments. Per-store families (a few lines each) and the ``volatile`` per-job family
(judged against the poll time) are encoded at every poll. A job that left the store leaves with
its fragments.

The lines are byte for byte those of ``prometheus_client``'s encoders (labels sorted by name,
the same escaping and float formatting); sample lines are the same in the text format and in
OpenMetrics, only the ``# HELP``/``# TYPE`` headers differ. ``tests/test_metric_store.py`` holds
the two to each other on random snapshots.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from prometheus_client.utils import floatToGoString

from exporter.metric_families import FAMILIES
from exporter.metric_table import Family, Histogram, Sample, Settings, Store
from exporter.snapshot import JobRuns, JobView, StoreSnapshot

STATIC = tuple(family for family in FAMILIES if family.part == "static")
# Per-job families whose lines depend only on the job's row and run history: kept per job.
KEPT = tuple(f for f in STATIC if f.per_job is not None and not f.volatile)
_KEPT_INDEX = {id(family): index for index, family in enumerate(KEPT)}


def _escape(value: str) -> str:
    """Label value escaping of both formats: backslash, newline, double quote."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _line(name: str, labels: Iterable[tuple[str, str]], value: float) -> str:
    pairs = ",".join(f'{key}="{_escape(text)}"' for key, text in sorted(labels))
    return (
        f"{name}{{{pairs}}} {floatToGoString(value)}\n"
        if pairs
        else f"{name} {floatToGoString(value)}\n"
    )


def encode(family: Family, samples: Iterable[Sample]) -> bytes:
    """The sample lines of ``samples`` (full label values), as prometheus_client writes them."""
    names = family.labels
    lines: list[str] = []
    for values, value in samples:
        labels = list(zip(names, values, strict=True))
        if isinstance(value, Histogram):
            name = family.name
            for bound, count in value.buckets:
                lines.append(_line(f"{name}_bucket", [*labels, ("le", bound)], count))
            if float(value.buckets[0][0]) >= 0:
                lines.append(_line(f"{name}_count", labels, value.buckets[-1][1]))
                lines.append(_line(f"{name}_sum", labels, value.sum))
        else:
            lines.append(_line(family.name, labels, value))
    return "".join(lines).encode()


def header(family: Family, openmetrics: bool) -> bytes:
    """``# HELP`` and ``# TYPE`` of a family: OpenMetrics names a counter without ``_total``."""
    text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
    name = family.name
    if openmetrics:
        text = text.replace('"', '\\"')
        if family.kind == "counter":
            name = name.removesuffix("_total")
    return f"# HELP {name} {text}\n# TYPE {name} {family.kind}\n".encode()


class _Job:
    """One job's kept lines, valid while its row (``view``) and history (``runs``) are these."""

    __slots__ = ("view", "runs", "lines")

    def __init__(self, view: JobView, runs: JobRuns | None, lines: tuple[bytes, ...]) -> None:
        self.view = view
        self.runs = runs
        self.lines = lines


class _StoreLines:
    """The kept lines of one job store, in the order of its series jobs."""

    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self.order: list[_Job] = []
        self.encoded = 0  # jobs encoded again by the last update (for the bench and the tests)

    def update(self, store: Store) -> None:
        previous = self.jobs
        runs_of = store.runs
        jobs: dict[str, _Job] = {}
        order: list[_Job] = []
        encoded = 0
        for view in store.snap.series_jobs:
            runs = runs_of.get(view.id)
            kept = previous.get(view.id)
            if kept is None or not _same(kept, view, runs):
                kept = _Job(view, runs, _encode_job(store, view, runs))
                encoded += 1
            jobs[view.id] = kept
            order.append(kept)
        self.jobs = jobs  # jobs that left the store leave with the old dict
        self.order = order
        self.encoded = encoded


def _same(kept: _Job, view: JobView, runs: JobRuns | None) -> bool:
    return (kept.view is view or kept.view == view) and (kept.runs is runs or kept.runs == runs)


_EMPTY = b""


def _encode_job(store: Store, view: JobView, runs: JobRuns | None) -> tuple[bytes, ...]:
    head = (store.name, view.id)
    lines = []
    for family in KEPT:
        assert family.per_job is not None
        samples = [((*head, *extra), value) for extra, value in family.per_job(store, view, runs)]
        lines.append(encode(family, samples) if samples else _EMPTY)
    return tuple(lines)


class MetricStore:
    """Renders the static part of the body from the latest snapshots, re-encoding what changed.

    ``render`` may be called from several threads (one per format); the fragments are updated
    once per set of snapshots, under a lock, and shared by both formats.
    """

    def __init__(
        self, snapshots: Callable[[], Iterable[StoreSnapshot]], settings: Settings
    ) -> None:
        self.snapshots = snapshots
        self.settings = settings
        self._lock = threading.Lock()
        self._seen: tuple[StoreSnapshot, ...] = ()
        self._stores: dict[str, _StoreLines] = {}
        self._parts: list[tuple[Family, list[bytes]]] = []
        self._headers = {flag: [header(f, flag) for f in STATIC] for flag in (False, True)}

    def render(self, openmetrics: bool) -> bytes:
        """The static part in one format (OpenMetrics without ``# EOF``: the clock part ends
        the body)."""
        with self._lock:
            self._update(tuple(self.snapshots()))
            chunks: list[bytes] = []
            for head, (_, parts) in zip(self._headers[openmetrics], self._parts, strict=True):
                chunks.append(head)
                chunks.extend(parts)
            return b"".join(chunks)

    @property
    def encoded(self) -> int:
        """Jobs whose lines the last update encoded again."""
        return sum(lines.encoded for lines in self._stores.values())

    def _update(self, snaps: tuple[StoreSnapshot, ...]) -> None:
        if len(snaps) == len(self._seen) and all(
            a is b for a, b in zip(snaps, self._seen, strict=True)
        ):
            return  # the same poll: the fragments are up to date
        stores = [Store(snap, self.settings, snap.taken_at) for snap in snaps]
        previous = dict(self._stores)
        kept: dict[str, _StoreLines] = {}
        ordered: list[_StoreLines] = []
        for store in stores:
            lines = previous.pop(store.name, None) or _StoreLines()
            lines.update(store)
            kept.setdefault(store.name, lines)
            ordered.append(lines)
        self._stores = kept  # a store gone from the configuration leaves with its lines
        self._parts = [(family, self._family_parts(family, stores, ordered)) for family in STATIC]
        self._seen = snaps

    def _family_parts(
        self, family: Family, stores: Sequence[Store], lines: Sequence[_StoreLines]
    ) -> list[bytes]:
        index = _KEPT_INDEX.get(id(family))
        if index is None:  # per store, once, or volatile: a few lines, encoded every poll
            return [encode(family, family.samples(stores, self.settings))]
        parts: list[bytes] = []
        for store, kept in zip(stores, lines, strict=True):
            if family.when(store):
                parts.extend([job.lines[index] for job in kept.order])
        return parts
