"""The listening socket: a cap on open connections, header and idle timeouts, TLS per connection.

On its own, aiohttp lets a connection that never sends a request, or sends its headers a byte at a
time, stay open as long as the client likes, and asyncio accepts connections until the process
runs out of file descriptors, after which every scrape fails with EMFILE. Here each accepted
connection is a :class:`_Connection` that sits between the socket and aiohttp's request handler
and is always in one of three states:

- ``waiting``: from accept (TLS handshake included), or from the first byte of a next request on a
  kept-alive connection, the request headers must arrive within ``header_timeout``;
- ``busy``: a request is being handled (:meth:`Connections.watch` says so); not timed out
  while the response moves, but closed once its client has taken nothing of it for
  ``idle_timeout`` (the transport's buffer stayed full: asyncio's ``pause_writing``). Otherwise
  a client that asks for a body of megabytes and never reads it held its connection for good,
  and enough of them filled the cap with connections that can never be closed to make room;
- ``idle``: between requests on a kept-alive connection; closed after ``idle_timeout``.

A state change only notes the time; one sweep, every quarter of the shorter timeout (at most once a
second, at least every 50 ms), closes what has overstayed. A timer per connection, re-armed at
every state change, cost four timer-heap operations per request: about a fifth of a scrape's
time on the event loop when a cached body is served at thousands of requests a second.

At most ``max_connections`` are open, and never more than the open-file limit leaves room for. A
connection beyond the cap closes the one that has waited longest without a request in flight,
preferring those that never completed a request, so a flood of silent sockets makes room for a
scrape instead of locking it out. Only when every open connection is busy is the new one closed.

TLS starts per connection (``loop.start_tls``) rather than in the listening socket, so a handshake
counts against the cap and the header timeout like everything else, and each handshake uses the
context its :class:`ContextSource` gives at that moment (renewed certificates: ``tls.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import resource
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

log = logging.getLogger(__name__)

#: Descriptors kept free for everything but client connections: database connections, files,
#: the event loop's own. The connection cap is lowered to leave them when the limit is low.
FD_RESERVE = 64
#: The listen backlog, which is also how many sockets asyncio accepts in one go before any of
#: them reaches :meth:`Connections.admit`: the cap leaves room for such a burst too.
BACKLOG = 128
_WARN_EVERY = 60.0  # seconds between two "connection limit reached" lines
_SWEEP_MAX = 1.0  # the longest gap between two sweeps (seconds)
_SWEEP_MIN = 0.05  # the shortest, however short the timeouts

WAITING, BUSY, IDLE = "waiting", "busy", "idle"


@dataclass(frozen=True, slots=True)
class Limits:
    """The connection settings, as documented in docs/security.md."""

    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 256


class ContextSource(Protocol):
    """Gives the TLS context for the next handshake."""

    def current(self) -> ssl.SSLContext: ...


def fd_bounded(wanted: int) -> int:
    """``wanted``, lowered so that open connections cannot exhaust the open-file limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    spare = FD_RESERVE + BACKLOG
    room = soft - spare if soft >= 2 * spare else max(1, soft // 4)
    if wanted <= room:
        return wanted
    log.warning(
        "web_max_connections %d does not fit the open-file limit of %d descriptors; serving at "
        "most %d connections (raise the limit with ulimit -n or LimitNOFILE= to allow more)",
        wanted,
        soft,
        room,
    )
    return room


def accept_burst() -> int:
    """The listen backlog: also how many sockets asyncio accepts in one go, before any of them
    is admitted (and an evicted one's descriptor is only freed a loop turn later). Under a low
    open-file limit the burst shrinks with it, so a few bursts in a row under load still fit in
    the descriptors the cap leaves free."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return BACKLOG
    return max(8, min(BACKLOG, soft // 8))


class Connections:
    """Every open connection and its state; enforces the cap and marks requests in progress."""

    def __init__(self, limits: Limits, tls: ContextSource | None = None) -> None:
        self.limits = limits
        self.tls = tls
        self.cap = fd_bounded(limits.max_connections)
        self._open: dict[_Connection, None] = {}  # in accept order
        self._by_handler: dict[asyncio.BaseProtocol, _Connection] = {}
        self._warned_at = -math.inf
        self._stalled_warned_at = -math.inf
        shorter = min(limits.header_timeout, limits.idle_timeout)
        self.sweep_every = min(_SWEEP_MAX, max(_SWEEP_MIN, shorter / 4))
        self._sweeper: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._open)

    def watch(self, server: web.Server) -> None:
        """Mark a connection busy while aiohttp handles a request on it (outside every
        middleware, so a request still in basic auth counts as busy).

        This wraps the server's request handler instead of adding a middleware: an app without
        middlewares (no basic auth configured) lets aiohttp skip building the middleware chain,
        and the wrapper it adds to every app that has one, on each request. Those two frames
        were 1.5% of the event loop's time at thousands of scrapes a second.
        """
        inner = server.request_handler
        if getattr(inner, "watched_by", None) is self:  # a second site on the same runner
            return
        by_handler = self._by_handler

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            connection = by_handler.get(request.protocol)
            if connection is None:  # served by another listener, e.g. a test server
                return await inner(request)
            connection.start_request()
            try:
                return await inner(request)
            finally:
                connection.end_request()

        handle.watched_by = self  # type: ignore[attr-defined]
        server.request_handler = handle

    def admit(self, connection: _Connection) -> bool:
        """Make room for ``connection`` if the cap is reached; False if none can be made."""
        if len(self._open) >= self.cap:
            victim = self._longest_waiting()
            if victim is None:
                self._warn("every one is handling a request, so the new connection was closed")
                return False
            self._warn("closed the connection that waited longest without a request")
            victim.close()
        self._open[connection] = None
        if self._sweeper is None:
            self._sweeper = connection.loop.call_later(self.sweep_every, self._sweep)
        return True

    def _sweep(self) -> None:
        """Close every connection that has waited for its headers longer than
        ``header_timeout``, idled longer than ``idle_timeout``, or whose client has taken
        nothing of its response for ``idle_timeout``; again while any is open."""
        self._sweeper = None
        if not self._open:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        header, idle = self.limits.header_timeout, self.limits.idle_timeout
        for connection in list(self._open):
            state = connection.state
            if state == BUSY:
                stalled = connection.stalled_since
                if stalled is not None and now - stalled >= idle:
                    self._stalled_warning(now)
                    connection.close()
                continue
            if now - connection.since >= (header if state == WAITING else idle):
                connection.close()
        if self._open:
            self._sweeper = loop.call_later(self.sweep_every, self._sweep)

    def _longest_waiting(self) -> _Connection | None:
        best: _Connection | None = None
        best_key: tuple[bool, float] = (True, math.inf)
        for connection in self._open:
            if connection.state == BUSY:
                continue
            key = (connection.requests > 0, connection.since)
            if key < best_key:
                best, best_key = connection, key
        return best

    def _warn(self, what: str) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning(
                "connection limit reached (%d open): %s; raise web_max_connections if your "
                "clients need more, or find the client that holds connections open",
                len(self._open),
                what,
            )

    def _stalled_warning(self, now: float) -> None:
        if now - self._stalled_warned_at >= _WARN_EVERY:
            self._stalled_warned_at = now
            log.warning(
                "closed a connection whose client took nothing of its response for %g s "
                "(web_idle_timeout); a scraper that slow, or one that stopped reading, would "
                "otherwise hold its connection for good",
                self.limits.idle_timeout,
            )

    def attached(self, connection: _Connection, handler: asyncio.BaseProtocol) -> None:
        self._by_handler[handler] = connection

    def forget(self, connection: _Connection) -> None:
        self._open.pop(connection, None)
        if connection.handler is not None:
            self._by_handler.pop(connection.handler, None)

    def close_unattached(self) -> None:
        """Close connections aiohttp does not know yet (mid-handshake); it closes the rest."""
        for connection in list(self._open):
            if connection.handler is None:
                connection.close()
        if self._sweeper is not None and not self._open:
            self._sweeper.cancel()
            self._sweeper = None


class _Connection(asyncio.Protocol):
    """One accepted socket: its state and timer, in front of aiohttp's request handler."""

    def __init__(
        self, connections: Connections, make_handler: Callable[[], asyncio.Protocol]
    ) -> None:
        self._connections = connections
        self._make_handler = make_handler
        self.loop = asyncio.get_running_loop()
        self.state = WAITING
        self.since = self.loop.time()
        self.requests = 0
        self.handler: asyncio.Protocol | None = None
        self._raw: asyncio.Transport | None = None
        self._early: list[bytes] = []  # decrypted bytes that came before the handler existed
        self._handshake: asyncio.Task[None] | None = None
        self._bytes_while_busy = False
        self._closed = False
        self.stalled_since: float | None = None  # the transport's buffer full since then

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        if not self._connections.admit(self):
            self._closed = True
            transport.abort()
            return
        tls = self._connections.tls
        if tls is None:
            self._attach(transport)
        else:
            self._handshake = self.loop.create_task(self._start_tls(tls.current()))

    def data_received(self, data: bytes) -> None:
        if self.state == IDLE:  # the first byte of the next request: its headers are due
            self._set(WAITING)
        elif self.state == BUSY:
            self._bytes_while_busy = True
        if self.handler is None:
            self._early.append(data)
        else:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._connections.forget(self)
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.stalled_since = self.loop.time()
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.stalled_since = None
        if self.handler is not None:
            self.handler.resume_writing()

    # --- state ---------------------------------------------------------------------------------

    def start_request(self) -> None:
        self.requests += 1
        self._bytes_while_busy = False
        self.state = BUSY

    def end_request(self) -> None:
        if self._closed:
            return
        # Bytes that came while busy: a next request has begun to arrive, its headers are due.
        self._set(WAITING if self._bytes_while_busy else IDLE)

    def close(self) -> None:
        """Drop the connection now (no TLS close_notify: it is a timeout or an eviction)."""
        self._connections.forget(self)
        if self._raw is not None and not self._closed:
            self._closed = True  # connection_lost still comes, and reaches the handler
            self._raw.abort()

    def _set(self, state: str) -> None:
        """Enter ``state`` now (the sweep reads ``since``)."""
        self.state = state
        self.since = self.loop.time()

    # --- wiring --------------------------------------------------------------------------------

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        raw = self._raw
        if self._closed or raw is None:
            return
        transport: asyncio.Transport | None = None
        with contextlib.suppress(Exception):  # bad handshakes, resets, timeouts: just close
            transport = await self.loop.start_tls(
                raw,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._connections.limits.header_timeout,
            )
        if transport is None or self._closed:
            # The raw transport now belongs to the TLS layer: this protocol hears no more.
            self._closed = True
            self._connections.forget(self)
            raw.abort()
            return
        self._attach(transport)

    def _attach(self, transport: asyncio.Transport) -> None:
        handler = self._make_handler()
        self.handler = handler
        self._connections.attached(self, handler)
        handler.connection_made(transport)
        early, self._early = self._early, []
        for chunk in early:
            handler.data_received(chunk)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through :class:`Connections` (cap, timeouts, TLS)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        connections: Connections,
        *,
        backlog: int | None = None,
    ) -> None:
        super().__init__(runner, backlog=accept_burst() if backlog is None else backlog)
        self._host = host
        self._port = port
        self._connections = connections

    @property
    def name(self) -> str:
        scheme = "https" if self._connections.tls is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        make_handler = self._runner.server
        assert make_handler is not None
        connections = self._connections
        connections.watch(make_handler)
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(connections, make_handler),
            self._host,
            self._port,
            backlog=self._backlog,
        )

    async def stop(self) -> None:
        await super().stop()
        self._connections.close_unattached()
