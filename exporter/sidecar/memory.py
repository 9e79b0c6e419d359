"""Keeping the sidecar's resident memory flat while it polls and renders all day.

Each poll and each render make large short-lived buffers (rows, a body of a few MB, its gzip)
beside long-lived small objects (snapshots, caches). With glibc's allocator that mix makes
the resident size climb for hours while the Python heap stays the same (measured by the churn
soak, ``bench/churn.py``), for two reasons this module deals with:

* glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MB), so
  after the first renders every body comes from the heap, and a heap with long-lived objects
  between the holes can seldom shrink. A fixed threshold keeps large buffers in their own
  mappings, returned to the system the moment they are freed.
* every thread that allocates gets an arena of its own, and each arena keeps its high-water
  mark. So renders run on one thread (:data:`RENDER_THREAD`) and each store's polls on one
  thread of their own, instead of whichever worker of the default pool is free.

Python's own small-object allocator (pymalloc) stays: an earlier version started ``serve`` again
on glibc's allocator (``PYTHONMALLOC=malloc``), because a few survivors of each render pinned
pymalloc's 1 MiB arenas and the resident size climbed under churn. Once renders stopped making
hundreds of thousands of objects (per-job lines kept as bytes, ``metrics/store.py``) and the
heap was frozen after each poll, the churn soak (``bench/churn.py``, 10 minutes, 2,000 jobs)
measured pymalloc flat and lower (+2.6 MiB, ending at 89.7 MiB, against +2.5 MiB and 93.1 MiB),
and serving a cached body 15 to 30 % faster: glibc's malloc costs more per small object, and a
scrape makes many.

``release()`` (``malloc_trim``) hands back the free pages after a large render. Without glibc
(musl, macOS) all of this does nothing.

The cyclic garbage collector is the other thing that makes the process wait: a full collection
walks every tracked object (at 10k jobs, the snapshot's views and the metric store's kept
lines), with the interpreter lock held the whole time, whatever the switch interval. Measured by
``bench/loop_lag.py``: a full pass of about 110 ms in the poll thread, the event loop stalled
for all of it. :class:`HeapFreezer` moves what a poll leaves behind into the permanent
generation (``gc.freeze()``): those objects are freed by their reference counts as before, but
later collections no longer walk them, so a full pass only sees what changed since.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 320 * 1024
"""Blocks of this size and larger get their own mapping. Just above asyncio's receive buffer
(256 KiB, allocated for every ``recv`` and shrunk to what came): at 256 KiB each read of a
request was a fresh mapping and its unmapping, a quarter of the requests per second lost on
small bodies (measured against the same server at 320 KiB and at 1 MiB)."""

RENDER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
"""The one thread every /metrics render runs on."""


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only: raises AttributeError elsewhere
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()
_trim: Callable[[int], int] | None = _LIBC.malloc_trim if _LIBC is not None else None


def on_glibc() -> bool:
    """Whether the process runs on glibc's allocator (where all of this applies)."""
    return _LIBC is not None


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold (see the module's docstring); True when it was set."""
    if _LIBC is None:
        return False
    done = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; memory may climb under churn")
    return done


def release() -> None:
    """Give the free memory at the top of the heaps back to the system (glibc only)."""
    if _trim is not None:
        _trim(0)


class HeapFreezer:
    """Keeps long-lived objects out of the cyclic GC's walks (see the module's docstring).

    ``after_poll()`` freezes everything tracked at that moment: it is a few list splices, no
    walk. A frozen object that later becomes unreachable inside a reference cycle would never be
    collected, so every ``period`` seconds the frozen objects are handed back and collected once
    (one full pass, the stall this avoids the rest of the time), which bounds what such cycles
    can hold; ``close()`` hands them back for good.
    """

    def __init__(self, period: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.clock = clock
        self._since = clock()

    def after_poll(self) -> None:
        now = self.clock()
        if now - self._since >= self.period:
            self._since = now
            gc.unfreeze()
            gc.collect()
        gc.freeze()

    def close(self) -> None:
        gc.unfreeze()
