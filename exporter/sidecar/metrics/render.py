"""Rendered ``/metrics`` bodies, shared by every scrape.

Rendering 10k jobs takes a large part of a second of Python; serving bytes takes microseconds.
So a body is built from two parts, rendered on one worker thread (``memory.RENDER_THREAD``:
per-thread allocator arenas would each keep their own high-water mark) and kept:

* the **static part** (everything a new poll changes): rendered once per snapshot version and
  format (text or OpenMetrics) by ``store.MetricStore``, which re-encodes only the jobs
  that changed and hands it over gzipped, recompressing only the blocks of lines that changed;
* the **clock part** (what the scrape time changes: ``*_next_run_delta_seconds``, heartbeat
  freshness, process metrics): rendered again after a poll or after ``max_age`` (1 s); a
  scrape within ``2 * max_age`` of the last one gets that body while the new one renders.

Both parts of a body come from the same snapshots, so a body never mixes two polls. A poll
starts the render of its body at once (``refresh_soon``); scrapes that arrive meanwhile get the
last complete body (stale by at most that render, well under a second at 10k jobs) instead of
queueing behind it. Only the first scrape of a format, and a clock part older than twice
``max_age`` (after a quiet spell), are waited for. A gzip stream may consist of several
members (RFC 1952) and Prometheus' reader takes them in sequence, so the gzipped body is the
cached static member followed by the small clock member, joined once per body, not per scrape.

A render that fails is loud, never a silently stale body: it is logged (one line, once per poll
and part), counted in ``jobstore_exporter_render_errors_total`` (served with the clock part),
and ``failing()`` makes ``/readyz`` answer 503 until a render succeeds again. Meanwhile the last
good part is served (with a fresh clock part when that one renders); with no good part at all,
``get`` raises :class:`RenderError`. Every render's outcome is retrieved, so no exception is
ever left to asyncio's "Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.sidecar import memory
from exporter.sidecar.metrics import gzip_members
from exporter.sidecar.metrics.collector import to_metric
from exporter.sidecar.metrics.families import family

log = logging.getLogger(__name__)
RENDER_ERRORS = family("jobstore_exporter_render_errors_total")

EOF_LINE = b"# EOF\n"

Encoder = Callable[[CollectorRegistry], bytes]


@dataclass(frozen=True, slots=True)
class _Part:
    """A rendered part, kept gzipped only.

    Prometheus asks for gzip; keeping each part's plain bytes too (beside the metric store's
    kept lines) would hold every body twice per format. A scrape without gzip gets the body
    decompressed (one C call)."""

    gzipped: bytes


@dataclass
class Body:
    """One complete body in one format; the plain bytes are made only if someone asks."""

    content_type: str
    version: Hashable
    made: float
    encoder: Encoder
    static: _Part
    clock: _Part
    gzipped: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.gzipped = self.static.gzipped + self.clock.gzipped

    _plain_soon: asyncio.Future[bytes] | None = field(default=None, init=False, repr=False)

    @cached_property
    def plain(self) -> bytes:
        return gzip_members.inflate_all(self.gzipped)

    async def plain_off_loop(self) -> bytes:
        """``plain``, decompressed once per body on a worker thread, for scrapes without gzip.

        At 10k jobs that is 5.9 MB of inflate per body (a new body every second while scrapes
        come): done on the event loop it held every other scrape for its whole length; ISA-L
        releases the interpreter lock while it inflates, so on a thread the loop keeps serving.
        """
        if "plain" in self.__dict__:
            return self.plain
        if self._plain_soon is None:
            self._plain_soon = asyncio.ensure_future(asyncio.to_thread(lambda: self.plain))
        return await asyncio.shield(self._plain_soon)


class RenderError(Exception):
    """No body of the asked format could be rendered; ``str()`` is one line saying why."""


class _RenderErrors(Collector):
    """``jobstore_exporter_render_errors_total``, in the clock part (which renders apart from
    the static part, so a failing static part can still be seen failing)."""

    def __init__(self, cache: BodyCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        counts = self.cache.errors_total
        yield to_metric(RENDER_ERRORS, [((part,), counts[part]) for part in ("static", "clock")])


class BodyCache:
    def __init__(
        self,
        static: Callable[[bool], bytes],
        clock_part: CollectorRegistry,
        version: Callable[[], Hashable],
        *,
        deltas: Callable[[bool], bytes] = lambda again: b"",
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``static(openmetrics)`` renders the static part gzipped (OpenMetrics without
        ``# EOF``: see ``store.py``, which recompresses only what changed);
        ``version()`` changes whenever the snapshots do (e.g. their poll times); ``deltas(again)``
        gives the directly formatted lines that start the clock part, gzipped (``again``: the
        last clock part is younger than ``max_age``, and its deltas' time may be kept; see
        ``deltas.DeltaLines``)."""
        self.static = static
        self.clock_part = clock_part
        self.deltas = deltas
        self.version = version
        self.max_age = max_age
        self.clock = clock
        self._bodies: dict[str, Body] = {}
        self._renders: dict[str, asyncio.Future[Body]] = {}
        self.errors_total = {"static": 0, "clock": 0}
        self._failing: dict[tuple[str, str], str] = {}  # (content type, part) -> reason
        self._unrendered: dict[str, Encoder] = {}  # formats asked for that never rendered
        self._encoders: dict[str, Encoder] = {}
        clock_part.register(_RenderErrors(self))

    def failing(self) -> str | None:
        """Why the latest render of some part failed (one line), or None when all are good."""
        if not self._failing:
            return None
        (content_type, part), reason = next(iter(self._failing.items()))
        kind = "OpenMetrics" if content_type.startswith("application/openmetrics") else "text"
        return f"rendering the {part} part of /metrics ({kind}) failed: {reason}"

    async def get(self, accept: str) -> Body:
        encoder, content_type = _negotiated(accept)
        body = self._bodies.get(content_type)
        if body is None:
            return await asyncio.shield(self._render(content_type, encoder))
        if body.version != self.version():
            # A new poll: its static part is under way (``refresh_soon``); meanwhile the last
            # complete body is served, instead of queueing every scrape behind the render.
            self._render(content_type, encoder)
            return body
        age = self.clock() - body.made
        if age >= self.max_age:
            # Same poll, old clock part: re-rendered now. While scrapes keep coming, they get the
            # body of a second ago meanwhile rather than queue behind the render (the deltas are
            # then at most about two seconds old); after a quiet spell, the first one waits.
            render = self._render(content_type, encoder)
            if age < 2 * self.max_age:
                return body
            return await asyncio.shield(render)
        return body

    def refresh_soon(self) -> None:
        """Start rendering every format in use from the current snapshots (after a poll)."""
        for content_type, body in list(self._bodies.items()):
            if not self._fresh(body):
                self._render(content_type, body.encoder)
        for content_type, encoder in list(self._unrendered.items()):
            self._render(content_type, encoder)

    async def refresh(self) -> None:
        """Render every format in use from the current snapshots, and wait for it."""
        for content_type, body in list(self._bodies.items()):
            if not self._fresh(body):
                await asyncio.shield(self._render(content_type, body.encoder))
        for content_type, encoder in list(self._unrendered.items()):
            with contextlib.suppress(RenderError):  # logged and counted already
                await asyncio.shield(self._render(content_type, encoder))

    def _fresh(self, body: Body) -> bool:
        return body.version == self.version() and self.clock() - body.made < self.max_age

    def _render(self, content_type: str, encoder: Encoder) -> asyncio.Future[Body]:
        """The render of this format under way, or a new one: never two at once."""
        self._encoders[content_type] = encoder
        render = self._renders.get(content_type)
        if render is None or render.done():
            render = asyncio.ensure_future(self._make(content_type, encoder))
            # Retrieved here too: a render nobody awaits (refresh_soon, a scrape that went away)
            # must not end as "Task exception was never retrieved".
            render.add_done_callback(_retrieve)
            self._renders[content_type] = render
        return render

    async def _make(self, content_type: str, encoder: Encoder) -> Body:
        version = self.version()
        made = self.clock()
        previous = self._bodies.get(content_type)
        openmetrics = content_type.startswith("application/openmetrics-text")
        if previous is not None and previous.version == version:
            static = previous.static  # the same poll: rendered, or failed and not retried
        else:
            static = await self._part(
                content_type,
                "static",
                None if previous is None else previous.static,
                lambda: _Part(self.static(openmetrics)),
            )
        # Right after a poll, a clock part younger than max_age keeps its time: the poll's body
        # is then as fresh as the last one, and the deltas need not be formatted again.
        again = previous is not None and made - previous.made < self.max_age
        if again:
            assert previous is not None
            made = previous.made
        clock_part = await self._part(
            content_type,
            "clock",
            None if previous is None else previous.clock,
            lambda: _Part(self.deltas(again) + _render(encoder, self.clock_part).gzipped),
        )
        body = Body(content_type, version, made, encoder, static, clock_part)
        self._unrendered.pop(content_type, None)
        self._bodies[content_type] = body
        if previous is None or static is not previous.static:
            # The previous body's buffers, freed just now, go back to the system after the body
            # is out, on the render thread: malloc_trim walks the heaps (about a millisecond at
            # 10k jobs), and on the event loop every scrape waited for it.
            trim = asyncio.get_running_loop().run_in_executor(memory.RENDER_THREAD, memory.release)
            trim.add_done_callback(_retrieve)
        return body

    async def _part(
        self, content_type: str, part: str, last_good: _Part | None, render: Callable[[], _Part]
    ) -> _Part:
        """Render one part in a worker thread; on failure say so and fall back to ``last_good``."""
        try:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(memory.RENDER_THREAD, render)
        except Exception as exc:  # noqa: BLE001 - any failure: reported, never silent
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            self.errors_total[part] += 1
            self._failing[content_type, part] = reason
            log.error(
                "rendering the %s part of /metrics (%s) failed, %s: %s",
                part,
                content_type.split(";")[0],
                "serving the last good one" if last_good is not None else "nothing to serve",
                reason,
            )
            if last_good is None:
                self._unrendered[content_type] = self._encoders[content_type]
                raise RenderError(f"rendering /metrics failed: {reason}") from None
            return last_good
        self._failing.pop((content_type, part), None)
        return result


@functools.lru_cache(maxsize=64)
def _negotiated(accept: str) -> tuple[Encoder, str]:
    """``choose_encoder`` per distinct Accept header: a scraper sends the same one every time,
    and parsing it cost more than the rest of serving a cached body."""
    return choose_encoder(accept)


def _retrieve(work: asyncio.Future[Any]) -> None:
    if not work.cancelled():
        work.exception()


def _render(encoder: Encoder, registry: CollectorRegistry) -> _Part:
    """Encode and gzip one registry."""
    return _compressed(encoder(registry))


def _compressed(plain: bytes) -> _Part:
    return _Part(gzip_members.compress(plain))
