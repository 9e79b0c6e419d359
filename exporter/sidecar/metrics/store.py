"""The static part of ``/metrics``, encoded per job and kept until the job changes.

``prometheus_client`` re-encodes every series of every poll, although between two polls only
the jobs whose row or run history changed have new lines: a store of 100k jobs paid its whole
size every poll and held the GIL for over a second. Here, as in kube-state-metrics' metrics
store, each job's lines of each per-job family are encoded to bytes once, when the job's
:class:`JobView` or :class:`JobRuns` changes (the sources hand out the very same objects while a
row and its history stay the same), and kept, gzipped per block of jobs (:class:`_StoreLines`);
a body is the family headers and the kept blocks one after the other. Per-store families (a few
lines each) and the ``volatile`` per-job family (judged against the poll time) are encoded at
every poll. A job that left the store leaves with its lines.

The lines are byte for byte those of ``prometheus_client``'s encoders (labels sorted by name,
the same escaping and float formatting); sample lines are the same in the text format and in
OpenMetrics, only the ``# HELP``/``# TYPE`` headers differ. ``tests/test_metric_store.py`` holds
the two to each other on random snapshots.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
import threading
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from prometheus_client.utils import floatToGoString

from exporter.sidecar import health
from exporter.sidecar.metrics import gzip_members
from exporter.sidecar.metrics.families import FAMILIES
from exporter.sidecar.metrics.table import (
    Family,
    Histogram,
    Sample,
    Settings,
    Store,
    count_paused,
    count_text_replaced,
    escape,
    fields_read,
    overdue_by_id,
)
from exporter.sidecar.snapshot import JobRuns, JobView, StoreSnapshot

STATIC = tuple(family for family in FAMILIES if family.part == "static")
# Per-job families whose lines depend only on the job's row and run history: kept per job.
KEPT = tuple(f for f in STATIC if f.per_job is not None and not f.volatile)
_KEPT_INDEX = {id(family): index for index, family in enumerate(KEPT)}
# Per-job families judged against the poll time: asked every poll, for the jobs they may concern.
VOLATILE = tuple(f for f in STATIC if f.per_job is not None and f.volatile)
_T = TypeVar("_T")
_NOT_FOUND: tuple[float, list[int]] = (math.nan, [])  # NaN equals no poll time

BLOCK = 1024
"""Rows per gzip member of a column: a poll recompresses the blocks whose bytes changed."""


def _line(name: str, labels: Iterable[tuple[str, str]], value: float) -> str:
    pairs = ",".join([f'{key}="{escape(text)}"' for key, text in sorted(labels)])
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
                f'{name}{{job_id="{escape(job)}",jobstore="{escape(store)}"}} '
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
    """The kept lines of one job store: a column per kept family, a row per series job, kept
    gzipped.

    Each column is a list of gzip members, one per block of :data:`BLOCK` rows, and the length
    of each row's lines; nothing else of it stays in memory. A body is the members one after
    the other (a C-level copy of references), and a poll that changed a few jobs inflates the
    blocks where their lines may have changed (in the families that read what moved:
    ``table.reads``), splices the new lines in by those lengths, and compresses again the
    blocks whose bytes changed. Keeping each row's lines as a bytes object of its own instead
    held the body a second time, plain, with a Python object per line (at 10k jobs 8 MB, a
    twelfth of the process: docs/performance.md). Kept values stay alive here (``views``,
    ``runs``), so comparing them by identity is safe.
    """

    def __init__(self) -> None:
        self.views: tuple[JobView, ...] = ()
        self.runs: dict[str, JobRuns] = {}
        self.history: tuple[JobRuns, ...] | None = None  # what ``runs`` was made from
        self.position: dict[str, int] = {}
        self.members: list[list[bytes]] = [[] for _ in KEPT]  # per column, per block
        self.lengths: list[array[int]] = [array("I") for _ in KEPT]  # per column, per row
        self.due = array("d")  # per job: not overdue, and no volatile sample, before this time
        self.paused = 0  # jobs without a next run time
        self.replaced = 0  # jobs whose row's text was replaced
        self._due_found: tuple[float, list[int]] = _NOT_FOUND  # (poll time, rows due by then)
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
            for i in dirty:
                self.paused += (views[i].next_run_time is None) - (old[i].next_run_time is None)
                self.replaced += views[i].text_replaced - old[i].text_replaced
            dirty.update(position[job] for job in touched if job in position)
            self._rewrite(store, sorted(dirty), views, runs)
            self.encoded = len(dirty)
        else:
            self._rebuild(store, views, runs, touched)
            self.paused = count_paused(views)
            self.replaced = count_text_replaced(views)
        self.views = views
        self.runs = runs
        self._due_found = _NOT_FOUND

    def _rewrite(
        self, store: Store, rows: list[int], views: tuple[JobView, ...], runs: dict[str, JobRuns]
    ) -> None:
        """Encode ``rows`` (sorted) again, and splice their lines into the blocks they are in."""
        settings = store.settings
        for block, in_block in itertools.groupby(rows, key=lambda i: i // BLOCK):
            indices = list(in_block)
            encoded = []
            for i in indices:
                view, job_runs = views[i], runs.get(views[i].id)
                moved = _moved(self.views[i], view, self.runs.get(view.id), job_runs)
                encoded.append(_encode_job(store, view, job_runs, moved))
                self.due[i] = _due(view, settings)
            for index, (members, lengths) in enumerate(
                zip(self.members, self.lengths, strict=True)
            ):
                # The rows whose lines of this family may have changed (what it reads did).
                rows_cells = [
                    (i, cell)
                    for i, lines in zip(indices, encoded, strict=True)
                    if (cell := lines[index]) is not None
                ]
                if not any(cell or lengths[i] for i, cell in rows_cells):
                    continue  # none, or no lines before and none now
                first = block * BLOCK
                plain = _inflate(members[block])
                offsets = list(itertools.accumulate(lengths[first : first + BLOCK], initial=0))
                pieces: list[bytes] = []
                at, same = 0, True
                for i, cell in rows_cells:
                    start, end = offsets[i - first], offsets[i - first + 1]
                    if same and plain[start:end] != cell:  # a renamed job changes its info
                        same = False  # line, not its others
                    pieces += (plain[at:start], cell)
                    at = end
                    lengths[i] = len(cell)
                if not same:
                    pieces.append(plain[at:])
                    members[block] = _deflate(b"".join(pieces))

    def _rebuild(
        self, store: Store, views: tuple[JobView, ...], runs: dict[str, JobRuns], touched: set[str]
    ) -> None:
        """Jobs came, went or moved: take the lines of unchanged jobs, encode the others.

        Unchanged jobs are taken as runs of rows that were neighbours before too (a job added
        or removed splits one run in two), each a single slice of the inflated column."""
        old, position = self.views, self.position
        picks: list[int] = []  # per new row: its old row, or -1 to encode it
        for view in views:
            p = position.get(view.id)
            if p is None or view.id in touched or (old[p] is not view and old[p] != view):
                picks.append(-1)
            else:
                picks.append(p)
        fresh = {
            i: _encode_job(store, views[i], runs.get(views[i].id))
            for i, p in enumerate(picks)
            if p < 0
        }
        # Where a run of kept rows starts: at a fresh row, after one, or where old rows skip.
        starts = [
            i
            for i in range(len(picks))
            if picks[i] < 0 or i == 0 or picks[i - 1] < 0 or picks[i] != picks[i - 1] + 1
        ]
        spans = list(zip(starts, [*starts[1:], len(picks)][: len(starts)], strict=True))
        blocks = -(-len(views) // BLOCK)
        for index in range(len(KEPT)):
            old_lengths = self.lengths[index]
            plain = b"".join(map(_inflate, self.members[index]))
            offsets = list(itertools.accumulate(old_lengths, initial=0))
            pieces: list[bytes] = []
            lengths = array("I")
            for start, end in spans:
                p = picks[start]
                if p < 0:
                    cell = fresh[start][index] or _EMPTY  # all encoded: never None
                    pieces.append(cell)
                    lengths.append(len(cell))
                else:
                    q = p + end - start
                    pieces.append(plain[offsets[p] : offsets[q]])
                    lengths.extend(old_lengths[p:q])
            column = b"".join(pieces)
            bounds = list(itertools.accumulate(lengths, initial=0))[::BLOCK]
            bounds.append(len(column))
            self.members[index] = [
                _deflate(column[bounds[b] : bounds[b + 1]]) for b in range(blocks)
            ]
            self.lengths[index] = lengths
        self.due = array("d", _pick([*self.due, math.inf], picks))  # -1: the inf
        for i in fresh:
            self.due[i] = _due(views[i], store.settings)
        self.position = {view.id: i for i, view in enumerate(views)}
        self.encoded = len(fresh)

    def volatile(self, family: Family, store: Store) -> Iterable[Sample]:
        """The samples of a volatile per-job family: only jobs that may have one are asked."""
        assert family.per_job is not None
        views, runs = self.views, self.runs
        for i in self._due_at(store.snap.taken_at):
            view = views[i]
            for extra, value in family.per_job(store, view, runs.get(view.id)):
                yield (store.name, view.id, *extra), value

    def overdue(self, store: Store) -> dict[str, float]:
        """The jobs overdue at the poll, by id, with how far past: ``health``'s rule, asked only
        of the jobs that may be."""
        snap, views = store.snap, self.views
        may_be = map(views.__getitem__, self._due_at(snap.taken_at))
        return overdue_by_id(may_be, snap.taken_at, store.settings.default_grace)

    def _due_at(self, now: float) -> list[int]:
        """The rows whose due time has come by ``now``, found in C (a NaN due time never
        comes); kept for the poll's other asker (the overdue count, the volatile family)."""
        if self._due_found[0] != now:
            due = self.due
            found = itertools.compress(
                range(len(due)), map(operator.le, due, itertools.repeat(now))
            )
            self._due_found = (now, list(found))
        return self._due_found[1]


def _pick(cells: list[_T], picks: list[int]) -> list[_T]:
    if not picks:
        return []
    if len(picks) == 1:
        return [cells[picks[0]]]
    return list(operator.itemgetter(*picks)(cells))


def _due(view: JobView, settings: Settings) -> float:
    """The earliest poll time at which this job may be overdue or a volatile family may give it
    a sample."""
    overdue = health.overdue_from(view, settings.default_grace)
    return min([overdue, *(family.due(view, settings) for family in VOLATILE)])


_EMPTY = b""


def _deflate(lines: bytes) -> bytes:
    """A block's gzip member; a block without lines has none."""
    return gzip_members.compress(lines) if lines else _EMPTY


def _inflate(member: bytes) -> bytes:
    return gzip_members.inflate(member) if member else _EMPTY


def _encode_job(
    store: Store, view: JobView, runs: JobRuns | None, moved: frozenset[str] | None = None
) -> tuple[bytes | None, ...]:
    """The job's lines of each kept family; None for a family that reads none of ``moved``
    (the fields that changed since its lines were encoded; None: anything may have)."""
    head = (store.name, view.id)
    lines: list[bytes | None] = []
    for family, per_job, read in _KEPT_SAMPLES:
        if moved is not None and read is not None and read.isdisjoint(moved):
            lines.append(None)
            continue
        samples = per_job(store, view, runs)
        lines.append(
            encode(family, [((*head, *extra), value) for extra, value in samples])
            if samples
            else _EMPTY
        )
    return tuple(lines)


# Per kept family: its sample function and what that reads (None: anything).
_KEPT_SAMPLES = [
    (family, family.per_job, fields_read(family.per_job))
    for family in KEPT
    if family.per_job is not None
]
_VIEW_FIELDS = tuple(field.name for field in dataclasses.fields(JobView))


def _moved(
    old: JobView, new: JobView, old_runs: JobRuns | None, new_runs: JobRuns | None
) -> frozenset[str]:
    """The fields of a job's view that differ between two polls, and ``"runs"`` if its run
    statistics do (what a family may read: :func:`~exporter.sidecar.metrics.table.reads`)."""
    moved = {name for name in _VIEW_FIELDS if getattr(old, name) != getattr(new, name)}
    if old_runs is not new_runs and old_runs != new_runs:
        moved.add("runs")
    return frozenset(moved)


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
            flag: list(map(gzip_members.compress, heads)) for flag, heads in self._headers.items()
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
                    chunks.extend(map(_inflate, kept.members[index]))
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
                            small = self._small_gzipped[k] = gzip_members.compress(lines)
                        chunks.append(small)
                    continue
                index = _KEPT_INDEX[id(family)]
                for kept in stores:
                    chunks.extend(kept.members[index])
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
            if store.snap.series_jobs is store.snap.jobs:  # the kept lines follow every job
                store.counted(lines.paused, lines.replaced, lines.overdue(store))
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
