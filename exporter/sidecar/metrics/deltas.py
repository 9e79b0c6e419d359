"""``apscheduler_job_next_run_delta_seconds``: the one family with a line per job that changes
with every scrape second, formatted directly and gzipped for the clock part of every body.

The generic encoder spends about 9 µs a line on it; a line formatted in Python about 0.9 µs,
which at 10k jobs was still 9 ms every second (and 90 ms at 100k), plus the compression. What
changes from one second to the next is only the number: so each job's text before it (name,
escaped labels) is kept, made again only for jobs that are new to the store, and a render is a
subtraction, a ``repr`` and a join, all run by C loops over lists (``map``, ``zip``, ``join``)
with no Python frame per job. The lines are the same in the text format and OpenMetrics (a
gauge, label values escaped alike), and the same bytes as a line-by-line format (``{value!r}``,
and ``+Inf``, ``-Inf``, ``NaN`` as prometheus_client spells them):
``tests/test_deltas.py`` holds the two to each other, and both to ``prometheus_client``'s
samples.
"""

from __future__ import annotations

import itertools
import math
import operator
import time
from array import array
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.utils import floatToGoString

from exporter.sidecar import pacing
from exporter.sidecar.metrics import gzip_members
from exporter.sidecar.metrics.families import family
from exporter.sidecar.metrics.table import escape
from exporter.sidecar.snapshot import JobView, StoreSnapshot

DELTA = family("apscheduler_job_next_run_delta_seconds")
HEADER = f"# HELP {DELTA.name} {DELTA.help}\n# TYPE {DELTA.name} {DELTA.kind}\n"

_next_run = operator.attrgetter("next_run_time")
_id = operator.attrgetter("id")


class _StoreLines:
    """One job store's delta lines without their numbers: for each series job with a next run
    time, its escaped id and the next run time it is measured from. A line is the store's
    prefix (starting with the newline that ends the line before it), the id, ``"} "`` and the
    number. An id that needs no escaping is the view's own string, so the lines cost no text of
    their own per job (a whole head per job was 1 MB at 10k jobs)."""

    def __init__(self, jobstore: str) -> None:
        self.jobstore = jobstore
        self.prefix = f'\n{DELTA.name}{{jobstore="{escape(jobstore)}",job_id="'
        self.views: tuple[JobView, ...] = ()
        self.ids: list[str] = []
        self.times: list[float] = []
        self.line_of = array("l")  # per view: the index of its line, or -1 (no next run)
        self.odd = False  # some next run time is infinite or NaN: numbers go through `number`

    def update(self, views: tuple[JobView, ...]) -> None:
        """Follow a new poll's series jobs. An unchanged poll (the very same tuple) costs
        nothing; a poll that changed some views of the same jobs in the same places, none of
        them paused or resumed (the usual poll), costs those views: at 10k jobs, 1% of them
        moved, 0.3 ms against 1.6 ms to escape every id again."""
        if views is self.views:
            return
        old, line_of = self.views, self.line_of
        if len(views) == len(old):
            changed = list(itertools.compress(range(len(views)), map(operator.is_not, views, old)))
            if all(
                views[i].id == old[i].id
                and (views[i].next_run_time is None) == (old[i].next_run_time is None)
                for i in changed
            ):
                for i in changed:
                    when = views[i].next_run_time
                    if when is not None:  # then it has a line, as before
                        # The new view's id (the same text): the old view's may now be freed.
                        self.ids[line_of[i]] = escape(views[i].id)
                        self.times[line_of[i]] = when
                        self.odd = self.odd or not math.isfinite(when)
                self.views = views
                return
        timed = [view for view in views if view.next_run_time is not None]
        self.ids = list(map(escape, map(_id, timed)))
        self.times = list(map(_next_run, timed))
        self.odd = not all(map(math.isfinite, self.times))
        lines = itertools.count()
        # An array, not a list: 10k int objects would be 300 KB.
        self.line_of = array("l", [-1 if v.next_run_time is None else next(lines) for v in views])
        self.views = views

    def lines(self, now: float) -> Iterator[str]:
        """The store's lines at ``now``, joined a slice of jobs at a time (see ``SLICE``), with a
        pause between slices (``pacing.pause``)."""
        ids, times, at = self.ids, self.times, itertools.repeat(now)
        text = number if self.odd else repr  # repr, a C call per job, spells inf and nan wrong
        prefix, close = itertools.repeat(self.prefix), itertools.repeat(_CLOSE)
        for start in range(0, len(ids), SLICE):
            if start:
                pacing.pause()
            end = start + SLICE
            values = map(text, map(operator.sub, times[start:end], at))
            yield "".join(
                itertools.chain.from_iterable(
                    zip(prefix, ids[start:end], close, values, strict=False)
                )
            )


_CLOSE = '"} '


def number(value: float) -> str:
    """``value`` as the exposition formats spell it: ``repr`` for a finite number (what the
    fast path writes), and for the rest ``+Inf``, ``-Inf`` or ``NaN`` from the formatter the
    static part uses. A next run time column can hold those (PostgreSQL's and SQLite's floats
    do), and a delta from one is one of them."""
    return repr(value) if math.isfinite(value) else floatToGoString(value)


SLICE = 256
"""Jobs formatted per C call. One join over every job of a 10k store held the interpreter lock
for about 12 ms in a single call, which no switch interval can interrupt: every scrape that
came meanwhile waited. A slice is about a tenth of a millisecond."""


def render(stores: Iterable[_StoreLines], now: float) -> bytes:
    """The whole family at ``now``: its header and a line per job of every store."""
    pieces = itertools.chain.from_iterable(store.lines(now) for store in stores)
    # Each head starts with the newline that ends the line before it: the header's own newline
    # is taken off, and the last line's added.
    return "".join(itertools.chain((HEADER[:-1],), pieces, ("\n",))).encode()


class DeltaLines:
    """The delta family of the current snapshots, gzipped (one gzip member), for the clock part
    of every body; handed out again right after a poll that moved no job's next run time.

    The deltas change with the clock, so they are rendered again each second that scrapes keep
    coming, and a poll in between needs a clock part for its new body too. When the last clock
    part is recent (``again``: the body cache found it younger than its max age), the poll's body
    takes the deltas at the last render's time: the very same bytes when no series job's id or
    next run time moved (a poll in which jobs were modified but none ran), else the lines of the
    new snapshots at that time. They are then no older than the deltas every scrape gets between
    two clock renders, and a line per job is not formatted and compressed twice within one
    second. Called on the one render thread only.
    """

    def __init__(
        self,
        snapshots: Callable[[], Iterable[StoreSnapshot]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.snapshots = snapshots
        self.clock = clock
        self._now: float | None = None  # the time of the last render
        self._inputs: list[tuple[str, bool, tuple[JobView, ...]]] = []
        self._stores: dict[str, _StoreLines] = {}
        self._gzipped = b""

    def __call__(self, again: bool = False) -> bytes:
        snaps = list(self.snapshots())
        inputs = [(snap.jobstore, snap.ever_succeeded, snap.series_jobs) for snap in snaps]
        if again and self._now is not None:
            if _same_next_runs(inputs, self._inputs):
                self._inputs = inputs
                return self._gzipped
            now = self._now
        else:
            now = self.clock()
        self._gzipped = gzip_members.compress(render(self._follow(inputs), now))
        self._now, self._inputs = now, inputs
        return self._gzipped

    def _follow(self, inputs: list[tuple[str, bool, tuple[JobView, ...]]]) -> list[_StoreLines]:
        """The kept lines of each store that has deltas (one that never read its job store has
        none), updated to its snapshot; a store gone from the configuration is forgotten."""
        kept: dict[str, _StoreLines] = {}
        ordered: list[_StoreLines] = []
        for jobstore, ever_succeeded, views in inputs:
            found = None if jobstore in kept else self._stores.get(jobstore)
            lines = found or _StoreLines(jobstore)
            kept.setdefault(jobstore, lines)
            if ever_succeeded:
                lines.update(views)
                ordered.append(lines)
        self._stores = kept
        return ordered


def _same_next_runs(
    new: list[tuple[str, bool, tuple[JobView, ...]]],
    old: list[tuple[str, bool, tuple[JobView, ...]]],
) -> bool:
    """Whether two sets of inputs give the same delta lines at the same time: the same stores,
    and the same job ids and next run times in the same places (views that are the very same
    objects, most of them after a poll, are not looked at)."""
    if len(new) != len(old):
        return False
    for (store, ok, jobs), (old_store, old_ok, old_jobs) in zip(new, old, strict=True):
        if store != old_store or ok != old_ok or len(jobs) != len(old_jobs):
            return False
        moved = itertools.compress(range(len(jobs)), map(operator.is_not, jobs, old_jobs))
        for i in moved:
            if jobs[i].id != old_jobs[i].id or jobs[i].next_run_time != old_jobs[i].next_run_time:
                return False
    return True
