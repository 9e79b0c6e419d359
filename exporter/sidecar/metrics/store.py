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

import gzip
import itertools
import math
import operator
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from prometheus_client.utils import floatToGoString

from exporter.sidecar.metrics.families import FAMILIES
from exporter.sidecar.metrics.table import Family, Histogram, Sample, Settings, Store
from exporter.sidecar.snapshot import JobRuns, JobView, StoreSnapshot

STATIC = tuple(family for family in FAMILIES if family.part == "static")
# Per-job families whose lines depend only on the job's row and run history: kept per job.
KEPT = tuple(f for f in STATIC if f.per_job is not None and not f.volatile)
_KEPT_INDEX = {id(family): index for index, family in enumerate(KEPT)}
# Per-job families judged against the poll time: asked every poll, for the jobs they may concern.
VOLATILE = tuple(f for f in STATIC if f.per_job is not None and f.volatile)
_T = TypeVar("_T")

BLOCK = 1024
"""Rows per gzip member of a column: a poll recompresses the blocks whose bytes changed."""
GZIP_LEVEL = 3
"""Half the time of level 5 for a fifth more bytes: a poll that changed 1% of the jobs, spread
over the store, recompresses every block of the columns they touched (at 10k jobs the
``apscheduler_job_info`` column alone is 1.65 MB: 5.1 ms at level 3, 10.5 ms at level 5, for
121 KB against 101 KB)."""


def gzipped(data: bytes) -> bytes:
    """One gzip member, dated 0 so that equal bytes compress to equal bytes."""
    return gzip.compress(data, GZIP_LEVEL, mtime=0)


def _escape(value: str) -> str:
    """Label value escaping of both formats: backslash, newline, double quote."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _line(name: str, labels: Iterable[tuple[str, str]], value: float) -> str:
    pairs = ",".join([f'{key}="{_escape(text)}"' for key, text in sorted(labels)])
    return (
        f"{name}{{{pairs}}} {floatToGoString(value)}\n"
        if pairs
        else f"{name} {floatToGoString(value)}\n"
    )


_JOB_LABELS = ("jobstore", "job_id")


def encode(family: Family, samples: Iterable[Sample]) -> bytes:
    """The sample lines of ``samples`` (full label values), as prometheus_client writes them."""
    names = family.labels
    name = family.name
    if names == _JOB_LABELS and family.kind != "histogram":
        # Most per-job families: the label order (job_id sorts before jobstore) is known.
        return "".join(
            [
                f'{name}{{job_id="{_escape(job)}",jobstore="{_escape(store)}"}} '
                f"{floatToGoString(value)}\n"
                for (store, job), value in samples  # type: ignore[misc]
            ]
        ).encode()
    lines: list[str] = []
    for values, value in samples:
        labels = list(zip(names, values, strict=True))
        if isinstance(value, Histogram):
            for bound, count in value.buckets:
                lines.append(_line(f"{name}_bucket", [*labels, ("le", bound)], count))
            if float(value.buckets[0][0]) >= 0:
                lines.append(_line(f"{name}_count", labels, value.buckets[-1][1]))
                lines.append(_line(f"{name}_sum", labels, value.sum))
        else:
            lines.append(_line(name, labels, value))
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


class _StoreLines:
    """The kept lines of one job store: a column per kept family, a row per series job.

    Columns, not objects per job: a body extends its chunk list by whole columns (a C-level copy
    of references), and a poll that changed 1% of the jobs rewrites 1% of the cells. Kept values
    stay alive here (``views``, ``runs``), so comparing them by identity is safe.
    """

    def __init__(self) -> None:
        self.views: tuple[JobView, ...] = ()
        self.runs: dict[str, JobRuns] = {}
        self.history: tuple[JobRuns, ...] | None = None  # what ``runs`` was made from
        self.position: dict[str, int] = {}
        self.columns: list[list[bytes]] = [[] for _ in KEPT]
        # Per column, the gzip member of each block of BLOCK rows; None once a row of the
        # block changed (compressed again when a body asks for it).
        self.members: list[list[bytes | None]] = [[] for _ in KEPT]
        self.due: list[float] = []  # per job: no volatile sample before this poll time
        self.encoded = 0  # jobs encoded again by the last update (for the bench and the tests)

    def update(self, store: Store) -> None:
        views = store.snap.series_jobs
        old_runs = self.runs
        history = store.snap.history
        touched: set[str] = set()
        if history is self.history and history is not None:
            # The history source hands out the same tuple while no run changed: no pass over it.
            store.reuse_runs(old_runs)
            runs = old_runs
        else:
            runs = store.runs
            # Jobs whose run statistics changed (or appeared, or went): usually a handful.
            touched = {job for job, item in runs.items() if old_runs.get(job) is not item}
            touched.update(old_runs.keys() - runs.keys())
        self.history = history
        old = self.views
        # Compared in C: a poll that changed 1% of the jobs runs Python for that 1% only.
        changed = (
            list(itertools.compress(range(len(views)), map(operator.is_not, views, old)))
            if len(views) == len(old)
            else None
        )
        if changed is not None and all(views[i].id == old[i].id for i in changed):
            # The same jobs in the same order (the usual poll): rewrite the changed rows.
            position = self.position
            dirty = {i for i in changed if views[i] != old[i]}
            dirty.update(position[job] for job in touched if job in position)
            for i in dirty:
                self._encode(store, i, views[i], runs.get(views[i].id))
            self.encoded = len(dirty)
        else:
            self._rebuild(store, views, runs, touched)
        self.views = views
        self.runs = runs

    def _encode(self, store: Store, i: int, view: JobView, runs: JobRuns | None) -> None:
        block = i // BLOCK
        for column, members, lines in zip(
            self.columns, self.members, _encode_job(store, view, runs), strict=True
        ):
            if column[i] != lines:  # a renamed job changes its info line, not its others
                column[i] = lines
                members[block] = None
        self.due[i] = _due(view, store.settings)

    @property
    def blocks(self) -> int:
        return -(-len(self.views) // BLOCK)

    def member(self, index: int, block: int) -> bytes:
        """The gzip member of one block of one column (empty when the block has no lines)."""
        found = self.members[index][block]
        if found is None:
            lines = b"".join(self.columns[index][block * BLOCK : (block + 1) * BLOCK])
            found = gzipped(lines) if lines else _EMPTY
            self.members[index][block] = found
        return found

    def _rebuild(
        self, store: Store, views: tuple[JobView, ...], runs: dict[str, JobRuns], touched: set[str]
    ) -> None:
        """Jobs came, went or moved: take the cells of unchanged jobs, encode the others."""
        old, position = self.views, self.position
        sentinel = len(old)  # one empty cell appended to every old column
        picks: list[int] = []
        fresh: list[int] = []
        for i, view in enumerate(views):
            p = position.get(view.id)
            if p is None or view.id in touched or (old[p] is not view and old[p] != view):
                picks.append(sentinel)
                fresh.append(i)
            else:
                picks.append(p)
        self.columns = [_pick([*column, _EMPTY], picks) for column in self.columns]
        self.members = [[None] * -(-len(views) // BLOCK) for _ in KEPT]  # rows moved: all new
        self.due = _pick([*self.due, math.inf], picks)
        self.position = {view.id: i for i, view in enumerate(views)}
        for i in fresh:
            self._encode(store, i, views[i], runs.get(views[i].id))
        self.encoded = len(fresh)

    def volatile(self, family: Family, store: Store) -> Iterable[Sample]:
        """The samples of a volatile per-job family: only jobs that may have one are asked."""
        assert family.per_job is not None
        due, views, now = self.due, self.views, store.snap.taken_at
        if not due or not min(due) <= now:
            return  # NaN-safe: a job whose due time is NaN is never asked
        runs = self.runs
        for i in itertools.compress(range(len(due)), map(operator.le, due, itertools.repeat(now))):
            view = views[i]
            for extra, value in family.per_job(store, view, runs.get(view.id)):
                yield (store.name, view.id, *extra), value


def _pick(cells: list[_T], picks: list[int]) -> list[_T]:
    if not picks:
        return []
    if len(picks) == 1:
        return [cells[picks[0]]]
    return list(operator.itemgetter(*picks)(cells))


def _due(view: JobView, settings: Settings) -> float:
    """The earliest poll time at which a volatile family may give this job a sample."""
    return min((family.due(view, settings) for family in VOLATILE), default=math.inf)


_EMPTY = b""


def _encode_job(store: Store, view: JobView, runs: JobRuns | None) -> tuple[bytes, ...]:
    head = (store.name, view.id)
    lines = []
    for family, per_job in _KEPT_SAMPLES:
        samples = per_job(store, view, runs)
        lines.append(
            encode(family, [((*head, *extra), value) for extra, value in samples])
            if samples
            else _EMPTY
        )
    return tuple(lines)


_KEPT_SAMPLES = [(family, family.per_job) for family in KEPT if family.per_job is not None]


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
        # Per static family: the kept lines of the stores it has lines from (referenced, not
        # copied), or the lines encoded at this poll, and those gzipped (once asked for).
        self._parts: list[tuple[Family, list[_StoreLines], bytes | None]] = []
        self._small_gzipped: dict[int, bytes] = {}
        self._headers = {flag: [header(f, flag) for f in STATIC] for flag in (False, True)}
        self._gzipped_headers = {
            flag: [gzipped(head) for head in heads] for flag, heads in self._headers.items()
        }

    def render(self, openmetrics: bool) -> bytes:
        """The static part in one format (OpenMetrics without ``# EOF``: the clock part ends
        the body)."""
        with self._lock:
            self._update_or_forget()
            chunks: list[bytes] = []
            for head, (family, stores, lines) in zip(
                self._headers[openmetrics], self._parts, strict=True
            ):
                chunks.append(head)
                if lines is not None:
                    chunks.append(lines)
                    continue
                index = _KEPT_INDEX[id(family)]
                for kept in stores:
                    chunks.extend(kept.columns[index])
            return b"".join(chunks)

    def render_gzipped(self, openmetrics: bool) -> bytes:
        """The static part gzipped, as gzip members (RFC 1952) one after the other: a member per
        family header and per block of rows of a column, each compressed again only when a row
        of it changed. Decompressed, it is :meth:`render`'s bytes."""
        with self._lock:
            self._update_or_forget()
            chunks: list[bytes] = []
            for k, (head, (family, stores, lines)) in enumerate(
                zip(self._gzipped_headers[openmetrics], self._parts, strict=True)
            ):
                chunks.append(head)
                if lines is not None:
                    if lines:
                        small = self._small_gzipped.get(k)
                        if small is None:
                            small = self._small_gzipped[k] = gzipped(lines)
                        chunks.append(small)
                    continue
                index = _KEPT_INDEX[id(family)]
                for kept in stores:
                    chunks.extend(kept.member(index, block) for block in range(kept.blocks))
            return b"".join(chunks)

    def _update_or_forget(self) -> None:
        try:
            self._update(tuple(self.snapshots()))
        except BaseException:
            # Half-updated lines must never be served or built upon: start again next time.
            self._stores, self._parts, self._seen = {}, [], ()
            raise

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
        self._parts = [self._family_parts(family, stores, ordered) for family in STATIC]
        self._small_gzipped = {}
        self._seen = snaps

    def _family_parts(
        self, family: Family, stores: Sequence[Store], lines: Sequence[_StoreLines]
    ) -> tuple[Family, list[_StoreLines], bytes | None]:
        if id(family) in _KEPT_INDEX:
            kept = [each for store, each in zip(stores, lines, strict=True) if family.when(store)]
            return family, kept, None
        if family.per_job is not None:  # volatile: asked for the jobs it may concern
            samples = [
                sample
                for store, kept_lines in zip(stores, lines, strict=True)
                if family.when(store)
                for sample in kept_lines.volatile(family, store)
            ]
            return family, [], encode(family, samples)
        return family, [], encode(family, family.samples(stores, self.settings))
