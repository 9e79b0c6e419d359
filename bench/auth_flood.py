"""A valid user's first scrape while 200 clients flood the sidecar with wrong passwords.

The sidecar runs in this process over TLS with basic auth (bcrypt cost 10, as htpasswd -B makes
by default), listening on 127.0.0.1 and on ::1. A child process (`flood`) sends wrong passwords
from 127.0.0.1 with 200 concurrent clients, each password new, so none is ever cached. Meanwhile
valid users, each for the first time (nothing cached), scrape /metrics from ::1: their latency is
what this measures, against Prometheus' default scrape timeout of 10 s.

    python -m bench.auth_flood [--clients 200] [--seconds 10] [--users 5]
    python -m bench.auth_flood flood URL CAFILE [--clients 200] [--seconds 8]   # the flood alone

Prints one line per valid user's first request, and the flood's status counts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

USER_PASSWORD = "correct horse battery staple"


def basic(user: str, password: str) -> str:
    """An ``Authorization`` header value for basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def flood(url: str, cafile: str, clients: int, seconds: float) -> dict[str, int]:
    """``clients`` concurrent loops of wrong-password GETs; returns how each was answered."""
    context = ssl.create_default_context(cafile=cafile)
    counts: collections.Counter[str] = collections.Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    connector = aiohttp.TCPConnector(limit=clients, ssl=context)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(client: int) -> None:
            attempt = 0
            while loop.time() < deadline:
                attempt += 1
                headers = {"Authorization": basic("prometheus", f"wrong-{client}-{attempt}")}
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        counts[str(response.status)] += 1
                except (aiohttp.ClientError, TimeoutError):
                    counts["error"] += 1
                if attempt == 1 and client == 0:
                    print("started", flush=True)

        await asyncio.gather(*(one(client) for client in range(clients)))
    return dict(counts)


async def start_flood(
    url: str, cafile: Path, clients: int, seconds: float
) -> asyncio.subprocess.Process:
    """The flood in a child process; returns once its first request was answered."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.auth_flood", "flood", url, str(cafile),
        "--clients", str(clients), "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    if line.strip() != b"started":
        raise RuntimeError(f"the flood did not start: {line!r}")
    return process


async def flood_result(process: asyncio.subprocess.Process) -> dict[str, int]:
    assert process.stdout is not None
    out = await asyncio.wait_for(process.stdout.read(), timeout=120)
    await process.wait()
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


async def _bench(clients: int, seconds: float, users: int) -> None:
    import bcrypt

    from exporter.sidecar.config import load_config
    from exporter.sidecar.serving.listener import GuardedSite
    from exporter.sidecar.serving.server import Sidecar, make_runner
    from exporter.sidecar.serving.web_config import load_web_config

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pki import make_pki
    from stores import write_jobs

    with tempfile.TemporaryDirectory() as scratch, make_pki() as pki:
        directory = Path(scratch)
        db_url = f"sqlite:///{directory / 'app.sqlite'}"
        write_jobs(db_url)
        pki.place(directory)
        hashed = bcrypt.hashpw(USER_PASSWORD.encode(), bcrypt.gensalt(10)).decode()
        names = [f"user{index}" for index in range(users)]
        web_file = directory / "web.yml"
        web_file.write_text(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "basic_auth_users:\n" + "".join(f"  {name}: '{hashed}'\n" for name in names)
        )
        config = load_config(db_url=db_url, poll_interval=3600)
        runner, connections = make_runner(Sidecar(config), load_web_config(web_file))
        await runner.setup()
        sites = [GuardedSite(runner, "127.0.0.1", 0, connections)]
        await sites[0].start()
        port = sites[0]._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        good_host = "127.0.0.1"
        if ipv6_loopback():
            sites.append(GuardedSite(runner, "::1", port, connections))
            await sites[1].start()
            good_host = "[::1]"
        try:
            process = await start_flood(
                f"https://127.0.0.1:{port}/metrics", pki.ca, clients, seconds
            )
            await asyncio.sleep(1)
            latencies = []
            context = ssl.create_default_context(cafile=str(pki.ca))
            for name in names:
                async with aiohttp.ClientSession() as session:
                    started = time.perf_counter()
                    async with session.get(
                        f"https://{good_host}:{port}/metrics",
                        headers={"Authorization": basic(name, USER_PASSWORD)},
                        ssl=context,
                        timeout=aiohttp.ClientTimeout(total=30),
                    ) as response:
                        await response.read()
                        elapsed = time.perf_counter() - started
                latencies.append(elapsed)
                print(f"{name} first scrape from {good_host}: {response.status} in {elapsed:.3f} s")
                await asyncio.sleep(0.5)
            counts = await flood_result(process)
        finally:
            await runner.cleanup()
    print(f"median {statistics.median(latencies):.3f} s, max {max(latencies):.3f} s")
    print(f"flood of {clients} clients for {seconds:.0f} s from 127.0.0.1 answered: {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    only = sub.add_parser("flood")
    only.add_argument("url")
    only.add_argument("cafile")
    for target in (parser, only):
        target.add_argument("--clients", type=int, default=200)
        target.add_argument("--seconds", type=float, default=8.0 if target is only else 10.0)
    parser.add_argument("--users", type=int, default=5)
    args = parser.parse_args()
    if args.command == "flood":
        print(json.dumps(asyncio.run(flood(args.url, args.cafile, args.clients, args.seconds))))
    else:
        asyncio.run(_bench(args.clients, args.seconds, args.users))


if __name__ == "__main__":
    main()
