"""Basic auth against bcrypt hashes, with a bound on what one client's failures can cost others.

A bcrypt check costs tens to hundreds of milliseconds of CPU by design, so checks run off the event
loop in a small pool of their own (``parallel`` threads, never the pool that renders ``/metrics``).
Successful checks are remembered as HMAC-SHA256 digests of user, hash and password under a key
made at start: a scraper that sends the same credentials every 15 s pays bcrypt once, and no
password is ever stored. An unknown user costs a bcrypt check like a known one, so timing does not
tell which user names exist.

Failures are what an attacker can make cheaply, and with one queue for everyone, 200 concurrent
wrong-password clients once made a valid user's first request wait 12 s, past Prometheus' scrape
timeout. So each client address gets a budget of bcrypt checks that did not succeed:

- at most ``pending_per_client`` of its checks queued or running at once;
- ``failure_burst`` failures, then one more per ``1 / failures_per_second`` seconds (a token
  bucket): a misconfigured scraper failing every 15 s never reaches the limit, a flood does at
  once.

Beyond its budget a client's uncached attempts are answered ``429`` with ``Retry-After`` without
running bcrypt, so the pool stays free for other addresses. Credentials already in the success
cache are never throttled. Clients sharing one address (behind a proxy or NAT) share its budget.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import bcrypt
from aiohttp import web

log = logging.getLogger(__name__)

REALM = "jobstore-exporter"
#: Paths served without basic auth: liveness probes carry no credentials and reveal nothing.
OPEN_PATHS = frozenset({"/healthz"})
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further; Go and htpasswd ignore the rest too
_LOG_EVERY = 60.0  # seconds between two "throttling" lines


def _default_parallel() -> int:
    return max(2, min(4, os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class AuthLimits:
    """How much bcrypt work clients can ask for; defaults documented in docs/security.md."""

    parallel: int = field(default_factory=_default_parallel)
    pending_per_client: int = 1
    failure_burst: int = 10
    failures_per_second: float = 1.0
    clients: int = 4096  # addresses remembered; the least recently seen are forgotten


class Throttled(Exception):
    """The client spent its budget of failed checks; it may retry after ``retry_after`` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.1f} s")
        self.retry_after = retry_after


@dataclass(slots=True)
class _Budget:
    tokens: float
    stamp: float
    pending: int = 0


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes off the event loop, per client."""

    def __init__(
        self,
        users: Sequence[tuple[str, bytes]],
        cache_size: int = 256,
        limits: AuthLimits | None = None,
    ) -> None:
        if not users:
            raise ValueError("BasicAuth needs at least one user")
        self._users = [(name.encode("utf-8"), hashed) for name, hashed in users]
        self._key = secrets.token_bytes(32)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self.limits = limits or AuthLimits()
        self._pool = ThreadPoolExecutor(self.limits.parallel, thread_name_prefix="bcrypt")
        self._budgets: OrderedDict[str, _Budget] = OrderedDict()
        self._logged_at = -math.inf

    def _digest(self, user: bytes, hashed: bytes, password: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (user, hashed, password):
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    async def check(self, authorization: str | None, client: str = "") -> bool:
        """True if the header carries the name and password of a configured user.

        Raises :class:`Throttled` when ``client`` (its address) has spent its budget and the
        credentials are not already known good.
        """
        credentials = parse_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        password = password[:BCRYPT_MAX_BYTES]
        hashed: bytes | None = None
        for name, candidate in self._users:  # compare every name: no early exit
            if hmac.compare_digest(name, user):
                hashed = candidate
        known = hashed is not None
        target = hashed if hashed is not None else self._users[0][1]
        digest = self._digest(user, target, password)
        if known and digest in self._ok:
            self._ok.move_to_end(digest)
            return True
        budget = self._admit(client)
        budget.pending += 1
        try:
            loop = asyncio.get_running_loop()
            matches = await loop.run_in_executor(self._pool, _bcrypt_matches, password, target)
        finally:
            budget.pending -= 1
        if not (known and matches):
            budget.tokens -= 1
            return False
        self._ok[digest] = None
        while len(self._ok) > self._cache_size:
            self._ok.popitem(last=False)
        return True

    def _admit(self, client: str) -> _Budget:
        limits = self.limits
        now = time.monotonic()
        budget = self._budgets.get(client)
        if budget is None:
            budget = _Budget(tokens=float(limits.failure_burst), stamp=now)
            self._budgets[client] = budget
            while len(self._budgets) > limits.clients:
                self._budgets.popitem(last=False)
        else:
            self._budgets.move_to_end(client)
            refill = (now - budget.stamp) * limits.failures_per_second
            budget.tokens = min(float(limits.failure_burst), budget.tokens + refill)
            budget.stamp = now
        if budget.tokens < 1:
            self._log_throttling(client)
            raise Throttled((1 - budget.tokens) / limits.failures_per_second)
        if budget.pending >= limits.pending_per_client:
            raise Throttled(1.0)
        return budget

    def _log_throttling(self, client: str) -> None:
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY:
            self._logged_at = now
            log.warning(
                "basic auth: too many failed logins from %s; answering its new attempts 429 "
                "without checking them (more such clients are not logged for a minute)",
                client or "an unknown address",
            )

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        try:
            ok = await self.check(request.headers.get("Authorization"), request.remote or "")
        except Throttled as exc:
            return web.Response(
                status=429,
                text="429: too many failed logins from this address; retry later\n",
                headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
            )
        if ok:
            return await handler(request)
        return web.Response(
            status=401,
            text="401: Unauthorized\n",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
        )


def parse_basic(authorization: str | None) -> tuple[bytes, bytes] | None:
    """``(user, password)`` from a Basic ``Authorization`` header, or None if there is none."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    return (user, password) if sep else None


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False
