"""Basic auth under a wrong-password flood: a valid user's first scrape still gets through in time,
and the flooding address is throttled instead of queueing bcrypt work for everyone."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from pki import Pki, make_pki
from stores import write_jobs
from support import Database

from bench.auth_flood import basic, flood_result, ipv6_loopback, start_flood
from exporter.sidecar.config import load_config
from exporter.sidecar.serving.basic_auth import AuthLimits, BasicAuth, Throttled
from exporter.sidecar.serving.listener import GuardedSite
from exporter.sidecar.serving.server import Sidecar, make_runner
from exporter.sidecar.serving.web_config import load_web_config

PASSWORD = "correct horse battery staple"
SCRAPE_TIMEOUT = 10.0  # Prometheus' default scrape_timeout


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with make_pki() as made:
        yield made


@asynccontextmanager
async def sidecar_on_two_addresses(
    db: Database, tmp_path: Path, pki: Pki
) -> AsyncIterator[tuple[int, int]]:
    """The sidecar as `serve` builds it (TLS, basic auth with a cost-10 hash, connection limits),
    listening on 127.0.0.1 and ::1: the flood comes from one address, the valid user from the
    other, as from two hosts."""
    write_jobs(db.url)
    pki.place(tmp_path)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    web_file = tmp_path / "web.yml"
    web_file.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    config = load_config(db_url=db.url, poll_interval=3600)
    runner, connections = make_runner(Sidecar(config), load_web_config(web_file))
    await runner.setup()
    try:
        ports = []
        for host in ("127.0.0.1", "::1"):
            site = GuardedSite(runner, host, 0, connections)
            await site.start()
            ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        yield ports[0], ports[1]
    finally:
        await runner.cleanup()


async def scrape(url: str, pki: Pki, password: str) -> int:
    context = ssl.create_default_context(cafile=str(pki.ca))
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            url,
            headers={"Authorization": basic("prometheus", password)},
            ssl=context,
            timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT),
        ) as response,
    ):
        await response.read()
        return response.status


async def test_valid_first_scrape_gets_through_a_wrong_password_flood(
    sqlite_db: Database, tmp_path: Path, pki: Pki
) -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) to be the second client address")
    async with sidecar_on_two_addresses(sqlite_db, tmp_path, pki) as (port4, port6):
        flood = await start_flood(f"https://127.0.0.1:{port4}/metrics", pki.ca, 200, 8)
        try:
            # Nothing cached yet: this is the first time this user's password is checked.
            # Answered within Prometheus' scrape timeout, or this raises TimeoutError.
            assert await scrape(f"https://[::1]:{port6}/metrics", pki, PASSWORD) == 200
            # Now known good: the same credentials pass even from the throttled address.
            assert await scrape(f"https://127.0.0.1:{port4}/metrics", pki, PASSWORD) == 200
        finally:
            counts = await flood_result(flood)
    assert counts.get("200", 0) == 0
    assert counts.get("429", 0) > counts.get("401", 0) > 0, counts
    assert counts.get("error", 0) == 0, counts


async def test_failure_budget_per_address() -> None:
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(4))
    auth = BasicAuth([("alice", hashed)], limits=AuthLimits(failure_burst=3))
    for attempt in range(3):
        assert not await auth.check(basic("alice", f"wrong{attempt}"), "192.0.2.1")
    with pytest.raises(Throttled) as throttled:
        await auth.check(basic("alice", "right"), "192.0.2.1")  # not cached yet: refused
    assert 0 < throttled.value.retry_after <= 1
    assert await auth.check(basic("alice", "right"), "192.0.2.2")  # another address
    assert await auth.check(basic("alice", "right"), "192.0.2.1")  # cached: never throttled
    assert not await auth.check(None, "192.0.2.1")  # no credentials: a plain 401
