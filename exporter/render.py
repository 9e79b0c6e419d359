"""Rendered ``/metrics`` bodies, shared by every scrape.

Rendering 10k jobs takes a second of Python; serving bytes takes microseconds. So the body is
built from two parts:

* the **static part** (everything a new poll changes): rendered once per snapshot version and
  format (text or OpenMetrics), gzipped once, and kept until the next poll;
* the **clock part** (what the scrape time changes: ``*_next_run_delta_seconds``, heartbeat
  freshness, process metrics): rendered again after a poll or after ``max_age`` (1 s).

A gzip stream may consist of several members (RFC 1952), and Prometheus' reader takes them in
sequence, so the gzipped body is the cached static member followed by a small clock member.
Concurrent scrapes of an expired part wait for one render instead of starting their own.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gzip
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

GZIP_LEVEL = 5
EOF_LINE = b"# EOF\n"


@dataclass(frozen=True, slots=True)
class Body:
    content_type: str
    plain: bytes
    gzipped: bytes


@dataclass(frozen=True, slots=True)
class _Part:
    key: Hashable
    made: float
    plain: bytes
    gzipped: bytes


class BodyCache:
    def __init__(
        self,
        static: CollectorRegistry,
        clock_part: CollectorRegistry,
        version: Callable[[], Hashable],
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``version()`` changes whenever the snapshots do (e.g. their poll times)."""
        self.static = static
        self.clock_part = clock_part
        self.version = version
        self.max_age = max_age
        self.clock = clock
        self._parts: dict[tuple[str, str], _Part] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def get(self, accept: str) -> Body:
        encoder, content_type = choose_encoder(accept)
        openmetrics = content_type.startswith("application/openmetrics-text")
        version = self.version()
        static = await self._part(
            ("static", content_type),
            lambda part: part.key == version,
            lambda: _render(encoder, self.static, strip_eof=openmetrics),
            version,
        )
        now = self.clock()
        dynamic = await self._part(
            ("clock", content_type),
            lambda part: part.key == version and now - part.made < self.max_age,
            lambda: _render(encoder, self.clock_part, strip_eof=False),
            version,
        )
        return Body(content_type, static.plain + dynamic.plain, static.gzipped + dynamic.gzipped)

    async def _part(
        self,
        name: tuple[str, str],
        fresh: Callable[[_Part], bool],
        render: Callable[[], tuple[bytes, bytes]],
        key: Hashable,
    ) -> _Part:
        async with self._locks.setdefault(name, asyncio.Lock()):
            part = self._parts.get(name)
            if part is not None and fresh(part):
                return part
            made = self.clock()
            plain, gzipped = await asyncio.to_thread(render)
            part = _Part(key, made, plain, gzipped)
            self._parts[name] = part
            if name[0] == "static":
                _release_freed_memory()
            return part


def _release_freed_memory() -> None:
    """Give the heap freed by a large render back to the system (glibc keeps it otherwise, and
    the process' resident size would stay at its highest peak)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


_malloc_trim = _load_malloc_trim()


def _render(
    encoder: Callable[[CollectorRegistry], bytes], registry: CollectorRegistry, *, strip_eof: bool
) -> tuple[bytes, bytes]:
    """Encode and gzip one part; the static OpenMetrics part loses its ``# EOF`` (the clock
    part, rendered after it, ends the body)."""
    plain = encoder(registry)
    if strip_eof and plain.endswith(EOF_LINE):
        plain = plain[: -len(EOF_LINE)]
    return plain, gzip.compress(plain, GZIP_LEVEL, mtime=0)
