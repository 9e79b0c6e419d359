"""Rendered ``/metrics`` bodies, shared by every scrape of the same moment.

Rendering 10k jobs takes tens of milliseconds of Python; serving bytes takes microseconds. A body
is rendered once per format (text or OpenMetrics) and gzipped once, then served to every scrape
until the snapshots change or ``max_age`` passes. ``max_age`` (default 1 s) bounds how stale the
scrape-time ``*_next_run_delta_seconds`` can be, so several Prometheus servers scraping together,
or a load test, cost one render per second at most. Concurrent scrapes of an expired body wait for
one render instead of starting their own.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

GZIP_LEVEL = 5


@dataclass(frozen=True, slots=True)
class Body:
    content_type: str
    plain: bytes
    gzipped: bytes


class BodyCache:
    def __init__(
        self,
        registry: CollectorRegistry,
        version: Callable[[], Hashable],
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``version()`` changes whenever the snapshots do (e.g. a tuple of their ids)."""
        self.registry = registry
        self.version = version
        self.max_age = max_age
        self.clock = clock
        self._bodies: dict[str, tuple[Hashable, float, Body]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, accept: str) -> Body:
        encoder, content_type = choose_encoder(accept)
        key = content_type
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._bodies.get(key)
            version = self.version()
            fresh = cached is not None and self.clock() - cached[1] < self.max_age
            if cached is not None and fresh and cached[0] == version:
                return cached[2]
            started = self.clock()
            body = await asyncio.to_thread(_render, encoder, self.registry, content_type)
            self._bodies[key] = (version, started, body)
            return body


def _render(
    encoder: Callable[[CollectorRegistry], bytes], registry: CollectorRegistry, content_type: str
) -> Body:
    plain = encoder(registry)
    return Body(content_type, plain, gzip.compress(plain, GZIP_LEVEL, mtime=0))
